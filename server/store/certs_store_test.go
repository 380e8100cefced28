package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

// certsDatabases runs fn against a fresh SQLite data directory and a fresh
// database on the shared real PostgreSQL: every query of certs.go, crls.go
// and idempotency.go must behave the same on both.
func certsDatabases(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := Open(context.Background(), Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := Open(context.Background(), Options{URL: pgtest.Shared(t).NewDatabase(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, db)
	})
}

var certsT0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

// certsFixture is certificate i of set: issued i minutes after certsT0,
// valid for a day, except every fourth which expired already.
func certsFixture(set string, i int) Certificate {
	c := Certificate{
		Serial: fmt.Sprintf("%s%04x", map[string]string{"a": "a", "b": "b"}[set], i), SHA256: fmt.Sprintf("%s-%064d", set, i),
		FusionSet: "set-" + set, AppID: "com.example.app", BuildID: fmt.Sprintf("b%d", i%3), Kind: KindBuild, Profile: "modern",
		IssuedAt: certsT0.Add(time.Duration(i) * time.Minute), IssuedBy: "token:ci", CertPEM: "pem", Record: "{}",
	}
	c.NotBefore = c.IssuedAt
	c.NotAfter = c.IssuedAt.Add(24 * time.Hour)
	if i%4 == 0 {
		c.NotAfter = c.IssuedAt.Add(time.Minute)
	}
	return c
}

func TestCertsListFiltersAndPages(t *testing.T) {
	certsDatabases(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		err := db.Tx(ctx, func(tx *Tx) error {
			for i := 1; i <= 40; i++ {
				for _, set := range []string{"a", "b"} {
					if err := tx.InsertCertificate(ctx, certsFixture(set, i)); err != nil {
						return err
					}
				}
			}
			_, err := tx.RevokeCertificate(ctx, "a0005", certsT0, "keyCompromise", "token:ops")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		now := certsT0.Add(2 * time.Hour)
		// Page through set a's valid certificates, 7 at a time: newest
		// first, no repeats, none missing.
		var got []string
		f := CertFilter{FusionSet: "set-a", Status: StatusValid, Now: now, Limit: 7}
		for {
			page, err := db.ListCertificates(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range page {
				got = append(got, c.Serial)
				if c.FusionSet != "set-a" || c.Status(now) != StatusValid {
					t.Fatalf("%s: set %s status %s", c.Serial, c.FusionSet, c.Status(now))
				}
			}
			if len(page) < f.Limit {
				break
			}
			last := page[len(page)-1]
			f.After = &CertPosition{IssuedNS: NS(last.IssuedAt), Serial: last.Serial}
		}
		var want []string
		for i := 40; i >= 1; i-- {
			if i%4 != 0 && i != 5 {
				want = append(want, fmt.Sprintf("a%04x", i))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("valid certificates of set-a\n got %v\nwant %v", got, want)
		}
		count := func(f CertFilter) int {
			f.Now, f.Limit = now, 500
			page, err := db.ListCertificates(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			return len(page)
		}
		for name, c := range map[string]struct {
			f    CertFilter
			want int
		}{
			"revoked":        {CertFilter{FusionSet: "set-a", Status: StatusRevoked}, 1},
			"expired":        {CertFilter{FusionSet: "set-b", Status: StatusExpired}, 10},
			"build":          {CertFilter{FusionSet: "set-b", AppID: "com.example.app", BuildID: "b1"}, 14},
			"other app":      {CertFilter{AppID: "com.example.other"}, 0},
			"issued between": {CertFilter{IssuedAfter: certsT0.Add(10 * time.Minute), IssuedBefore: certsT0.Add(20 * time.Minute)}, 20},
			"expiring":       {CertFilter{FusionSet: "set-a", ExpiresAfter: certsT0.Add(24 * time.Hour), ExpiresBefore: certsT0.Add(24*time.Hour + 5*time.Minute)}, 3},
			"everything":     {CertFilter{}, 80},
		} {
			if n := count(c.f); n != c.want {
				t.Errorf("%s: %d certificates, want %d", name, n, c.want)
			}
		}
		c, err := db.Certificate(ctx, "a0005")
		if err != nil || c.RevocationReason != "keyCompromise" || c.RevokedBy != "token:ops" || c.Record != "{}" || c.Status(now) != StatusRevoked {
			t.Fatalf("a0005: %+v, %v", c, err)
		}
		if _, err := db.Certificate(ctx, "ffff"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown serial: %v", err)
		}
	})
}

func TestCertsRevokeOnce(t *testing.T) {
	certsDatabases(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		err := db.Tx(ctx, func(tx *Tx) error {
			for i := 1; i <= 4; i++ {
				if err := tx.InsertCertificate(ctx, certsFixture("a", i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx *Tx) error { return tx.InsertCertificate(ctx, certsFixture("a", 1)) })
		if !IsUniqueViolation(err) {
			t.Fatalf("a second certificate with one serial: %v", err)
		}
		var first, second bool
		var revoked []Revoked
		err = db.Tx(ctx, func(tx *Tx) error {
			var err error
			if first, err = tx.RevokeCertificate(ctx, "a0002", certsT0, "superseded", "token:ops"); err != nil {
				return err
			}
			if second, err = tx.RevokeCertificate(ctx, "a0002", certsT0.Add(time.Hour), "keyCompromise", "token:other"); err != nil {
				return err
			}
			if _, err = tx.RevokeCertificate(ctx, "a0004", certsT0, "", "token:ops"); err != nil {
				return err
			}
			// a0004 expired: not listed although revoked.
			got, err := tx.CertificatesBySerial(ctx, []string{"a0001", "a0002", "ffff"})
			if err != nil || len(got) != 2 || got["a0002"].RevocationReason != "superseded" {
				return fmt.Errorf("by serial: %v, %v", got, err)
			}
			revoked, err = tx.RevokedCertificates(ctx, "set-a", certsT0.Add(10*time.Minute))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !first || second {
			t.Fatalf("revoked first %v, second %v; want true, false", first, second)
		}
		if len(revoked) != 1 || revoked[0].Serial != "a0002" || revoked[0].Reason != "superseded" || !revoked[0].RevokedAt.Equal(certsT0) {
			t.Fatalf("revoked list %+v", revoked)
		}
		err = db.Tx(ctx, func(tx *Tx) error {
			// After it expired, the CRL may drop it.
			revoked, err = tx.RevokedCertificates(ctx, "set-a", certsT0.Add(48*time.Hour))
			return err
		})
		if err != nil || len(revoked) != 0 {
			t.Fatalf("expired revoked certificates listed: %v, %v", revoked, err)
		}
	})
}
