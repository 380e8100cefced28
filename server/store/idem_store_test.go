package store

import (
	"context"
	"testing"
	"time"
)

func TestIdemClaimReplayExpire(t *testing.T) {
	certsDatabases(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		claim := func(token, key, hash string, now time.Time) *Idempotency {
			t.Helper()
			e, err := db.ClaimIdempotency(ctx, token, key, hash, now, now.Add(-24*time.Hour), now.Add(-time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		if e := claim("tok1", "k", "h1", certsT0); e != nil {
			t.Fatalf("first claim found %+v", e)
		}
		// While the first runs, a retry sees it pending.
		if e := claim("tok1", "k", "h1", certsT0.Add(time.Second)); e == nil || e.State != IdemPending || e.RequestSHA256 != "h1" {
			t.Fatalf("retry while pending: %+v", e)
		}
		// Keys belong to a token: another token's same key is its own.
		if e := claim("tok2", "k", "h2", certsT0); e != nil {
			t.Fatalf("other token's key: %+v", e)
		}
		if err := db.Tx(ctx, func(tx *Tx) error { return tx.CompleteIdempotency(ctx, "tok1", "k", 201, []byte("sealed")) }); err != nil {
			t.Fatal(err)
		}
		e := claim("tok1", "k", "h1", certsT0.Add(time.Hour))
		if e == nil || e.State != IdemDone || e.Status != 201 || string(e.Sealed) != "sealed" || !e.Created.Equal(certsT0) {
			t.Fatalf("retry after completion: %+v", e)
		}
		// Completing twice is refused: the claim is gone.
		if err := db.Tx(ctx, func(tx *Tx) error { return tx.CompleteIdempotency(ctx, "tok1", "k", 201, []byte("again")) }); err == nil {
			t.Fatal("a completed key was completed again")
		}
		// After 24 hours the key is forgotten and free again.
		if e := claim("tok1", "k", "h9", certsT0.Add(25*time.Hour)); e != nil {
			t.Fatalf("claim after expiry: %+v", e)
		}
		// A pending claim whose request died is taken over after a minute.
		if e := claim("tok2", "k", "h2", certsT0.Add(2*time.Minute)); e != nil {
			t.Fatalf("stale pending claim not taken over: %+v", e)
		}
		// A failed request releases its claim.
		if e := claim("tok3", "k", "h3", certsT0); e != nil {
			t.Fatal(e)
		}
		if err := db.ReleaseIdempotency(ctx, "tok3", "k"); err != nil {
			t.Fatal(err)
		}
		if e := claim("tok3", "k", "h4", certsT0); e != nil {
			t.Fatalf("released key: %+v", e)
		}
		n, err := db.PurgeIdempotency(ctx, certsT0.Add(time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("purged %d, %v; want the tok2 and tok3 keys (tok1's is newer)", n, err)
		}
	})
}
