package authority_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// H2's queries (tokens, CAs, fusion set versions) on a real PostgreSQL:
// ON CONFLICT, BYTEA, the CASE ordering and the grouped set list.
func TestAuthorityPostgresQueries(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	db, err := store.Open(ctx, store.Options{URL: pg.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "kek.key"))
	if err != nil {
		t.Fatal(err)
	}

	toks := auth.NewTokens(db, time.Now)
	secret, tok, err := toks.Create(ctx, "ci", []auth.Scope{"read", "issue"}, time.Hour, "cli:test")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := toks.Verify(ctx, secret); err != nil || c.TokenID != tok.ID {
		t.Fatalf("Verify: %v", err)
	}
	if _, _, err := toks.Create(ctx, "ci", []auth.Scope{"read"}, 0, "cli:test"); !errors.Is(err, auth.ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := toks.Revoke(ctx, "ci", "cli:test"); err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Verify(ctx, secret); !errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("revoked token: %v", err)
	}
	if list, err := toks.List(ctx); err != nil || len(list) != 1 || list[0].LastUsedAt.IsZero() {
		t.Fatalf("List: %+v, %v", list, err)
	}

	auths := authority.New(db, kek, time.Now)
	for i := 0; i < 2; i++ {
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := auths.Ensure(ctx, tx, "bank-prod", "token:admin")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := auths.CA(ctx, "bank-prod"); err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(t.TempDir(), "ca")
	if _, err := pki.InitCA(caDir, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := auths.Import(ctx, "bank-beta", caDir, "cli:test"); err != nil {
		t.Fatal(err)
	}
	if err := auths.Import(ctx, "bank-prod", caDir, "cli:test"); !errors.Is(err, authority.ErrCAExists) {
		t.Fatalf("import over a CA: %v", err)
	}

	for v := int64(1); v <= 3; v++ {
		err := db.Tx(ctx, func(tx *store.Tx) error {
			if v > 1 {
				if latest, err := tx.LatestSetVersion(ctx, "bank-prod"); err != nil || latest.Version != v-1 {
					t.Fatalf("latest %d, %v", latest.Version, err)
				}
			}
			return tx.InsertSetVersion(ctx, store.SetVersion{FusionSet: "bank-prod", Version: v, Document: "d", SHA256: "s",
				Created: time.Now(), Actor: "token:admin", Changes: []string{"a"}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err = db.Tx(ctx, func(tx *store.Tx) error {
		return tx.InsertSetVersion(ctx, store.SetVersion{FusionSet: "bank-prod", Version: 3, Document: "d", SHA256: "s", Created: time.Now(), Actor: "x"})
	})
	if !store.IsUniqueViolation(err) {
		t.Fatalf("a second version 3: %v", err)
	}
	sets, err := db.ListSets(ctx, "", 10)
	if err != nil || len(sets) != 1 || sets[0].Version != 3 || sets[0].CACertPEM == "" {
		t.Fatalf("ListSets: %+v, %v", sets, err)
	}
	hist, err := db.SetHistory(ctx, "bank-prod", 3, 10)
	if err != nil || len(hist) != 2 || hist[0].Version != 2 {
		t.Fatalf("SetHistory: %+v, %v", hist, err)
	}
	if _, err := db.SetVersionOf(ctx, "bank-prod", 9); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
	if n, _, err := db.VerifyAudit(ctx); err != nil || n != 4 { // token create and revoke, ca.create, ca.import
		t.Fatalf("audit: %d entries, %v", n, err)
	}
}
