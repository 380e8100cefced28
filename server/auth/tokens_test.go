package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// tokensClock is a clock tests move.
type tokensClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tokensClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *tokensClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func tokensOpen(t *testing.T) (*store.DB, *auth.Tokens, *tokensClock) {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := &tokensClock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
	return db, auth.NewTokens(db, clock.Now), clock
}

func TestTokensCreateVerify(t *testing.T) {
	ctx := context.Background()
	db, toks, _ := tokensOpen(t)
	secret, tok, err := toks.Create(ctx, "ci-android", []auth.Scope{"read", "issue", "read"}, 0, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != auth.TokenLen || !strings.HasPrefix(secret, "mcc_"+tok.ID+"_") {
		t.Fatalf("secret %q does not have the mcc_<id>_<secret> form", secret)
	}
	if got := strings.Join([]string{string(tok.Scopes[0]), string(tok.Scopes[1])}, ","); got != "issue,read" || len(tok.Scopes) != 2 {
		t.Fatalf("scopes %v, want sorted issue,read", tok.Scopes)
	}
	c, err := toks.Verify(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenID != tok.ID || c.TokenName != "ci-android" || !c.Has(auth.ScopeIssue) || c.Has(auth.ScopeAdmin) || c.Has(auth.ScopeRevoke) {
		t.Fatalf("caller %+v", c)
	}
	// The secret is stored only as its hash.
	row, err := db.TokenByID(ctx, tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(row.Hash), secret[len(secret)-43:]) || len(row.Hash) != 32 {
		t.Fatalf("stored hash %x", row.Hash)
	}
	entries, err := db.ReadAudit(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Action != store.AuditTokenCreate || entries[0].Subject != "token/ci-android" || entries[0].Actor != "cli:alice" {
		t.Fatalf("audit %+v", entries)
	}
	if detail, _ := json.Marshal(entries[0].Detail); strings.Contains(string(detail), secret[len(secret)-43:]) {
		t.Fatal("the audit entry holds the secret")
	}
}

func TestTokensRefused(t *testing.T) {
	ctx := context.Background()
	_, toks, clock := tokensOpen(t)
	secret, tok, err := toks.Create(ctx, "ci", []auth.Scope{"read"}, time.Hour, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	other := []byte(secret)
	if other[len(other)-1] == 'A' {
		other[len(other)-1] = 'B'
	} else {
		other[len(other)-1] = 'A'
	}
	unknownID := "mcc_0123456789abcdef_" + secret[len(secret)-43:]
	cases := map[string]string{
		"wrong secret":      string(other),
		"unknown id":        unknownID,
		"empty":             "",
		"no prefix":         secret[4:],
		"upper-case id":     "mcc_" + strings.ToUpper(tok.ID) + secret[4+16:],
		"cut":               secret[:len(secret)-1],
		"longer":            secret + "A",
		"other prefix":      "mcx_" + secret[4:],
		"separator missing": "mcc_" + tok.ID + "-" + secret[4+17:],
		"nul":               "mcc_" + tok.ID + "_" + strings.Repeat("\x00", 43),
	}
	for name, bearer := range cases {
		if _, err := toks.Verify(ctx, bearer); !errors.Is(err, auth.ErrUnauthorized) {
			t.Errorf("%s: Verify = %v, want ErrUnauthorized", name, err)
		}
	}
	if _, err := toks.Verify(ctx, secret); err != nil {
		t.Fatalf("the right token is refused: %v", err)
	}
	clock.Add(time.Hour)
	if _, err := toks.Verify(ctx, secret); !errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("an expired token: %v", err)
	}
}

func TestTokensRevoke(t *testing.T) {
	ctx := context.Background()
	db, toks, _ := tokensOpen(t)
	secret, tok, err := toks.Create(ctx, "ci", []auth.Scope{"admin"}, 0, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := toks.Revoke(ctx, "nobody", "cli:alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown token: %v", err)
	}
	got, err := toks.Revoke(ctx, "ci", "token:boss")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != tok.ID || got.RevokedAt.IsZero() {
		t.Fatalf("revoked %+v", got)
	}
	if _, err := toks.Verify(ctx, secret); !errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("a revoked token verifies: %v", err)
	}
	again, err := toks.Revoke(ctx, tok.ID, "token:boss")
	if err != nil || !again.RevokedAt.Equal(got.RevokedAt) {
		t.Fatalf("revoking again by id: %+v, %v", again, err)
	}
	entries, _ := db.ReadAudit(ctx, 0, 10)
	if len(entries) != 2 || entries[1].Action != store.AuditTokenRevoke || entries[1].Actor != "token:boss" {
		t.Fatalf("audit %+v (want create and one revoke)", entries)
	}
	// The name stays taken: the audit log's names stay unambiguous.
	if _, _, err := toks.Create(ctx, "ci", []auth.Scope{"read"}, 0, "cli:alice"); !errors.Is(err, auth.ErrNameTaken) {
		t.Fatalf("reusing a revoked token's name: %v", err)
	}
	list, err := toks.List(ctx)
	if err != nil || len(list) != 1 || list[0].RevokedAt.IsZero() {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if n, _, err := db.VerifyAudit(ctx); err != nil || n != 2 {
		t.Fatalf("audit chain: %d, %v", n, err)
	}
}

func TestTokensCreateRefused(t *testing.T) {
	ctx := context.Background()
	_, toks, _ := tokensOpen(t)
	cases := []struct {
		name, field string
		scopes      []auth.Scope
		expires     time.Duration
	}{
		{"", "name", []auth.Scope{"read"}, 0},
		{"CI", "name", []auth.Scope{"read"}, 0},
		{"-ci", "name", []auth.Scope{"read"}, 0},
		{"ci/android", "name", []auth.Scope{"read"}, 0},
		{strings.Repeat("a", 65), "name", []auth.Scope{"read"}, 0},
		{"0123456789abcdef", "name", []auth.Scope{"read"}, 0},
		{"ci", "scopes", nil, 0},
		{"ci", "scopes", []auth.Scope{"root"}, 0},
		{"ci", "scopes", []auth.Scope{"read,admin"}, 0},
		{"ci", "expiresIn", []auth.Scope{"read"}, -time.Hour},
		{"ci", "expiresIn", []auth.Scope{"read"}, time.Second},
		{"ci", "expiresIn", []auth.Scope{"read"}, 2562047 * time.Hour}, // would wrap into the past
	}
	for _, c := range cases {
		_, _, err := toks.Create(ctx, c.name, c.scopes, c.expires, "cli:alice")
		var inv *auth.InvalidError
		if !errors.As(err, &inv) || inv.Field != c.field {
			t.Errorf("Create(%q, %v, %s) = %v, want a problem with %s", c.name, c.scopes, c.expires, err, c.field)
		}
	}
	if list, _ := toks.List(ctx); len(list) != 0 {
		t.Fatalf("refused tokens were stored: %+v", list)
	}
}

// Last use is written at most once a minute, however many requests.
func TestTokensLastUsed(t *testing.T) {
	ctx := context.Background()
	db, toks, clock := tokensOpen(t)
	secret, tok, err := toks.Create(ctx, "ci", []auth.Scope{"read"}, 0, "cli:alice")
	if err != nil {
		t.Fatal(err)
	}
	lastUsed := func() time.Time {
		row, err := db.TokenByID(ctx, tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		return row.LastUsed
	}
	if !lastUsed().IsZero() {
		t.Fatal("a new token has a last use")
	}
	first := clock.Now()
	for i := 0; i < 5; i++ {
		if _, err := toks.Verify(ctx, secret); err != nil {
			t.Fatal(err)
		}
		clock.Add(10 * time.Second)
	}
	if got := lastUsed(); !got.Equal(first) {
		t.Fatalf("last use %s, want the first use %s (one write a minute)", got, first)
	}
	clock.Add(20 * time.Second) // 70s after the first use
	if _, err := toks.Verify(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.Equal(clock.Now()) {
		t.Fatalf("last use %s, want %s", got, clock.Now())
	}
	list, _ := toks.List(ctx)
	if !list[0].LastUsedAt.Equal(clock.Now()) {
		t.Fatalf("List shows last use %s", list[0].LastUsedAt)
	}
}
