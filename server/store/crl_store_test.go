package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

// crlBump signs (here: fakes) the next CRL of set in its own transaction.
func crlBump(ctx context.Context, db *DB, set string, at time.Time) (int64, error) {
	var n int64
	err := db.Tx(ctx, func(tx *Tx) error {
		cur, err := tx.LockCRL(ctx, set)
		if err != nil {
			return err
		}
		n = cur.Number + 1
		return tx.PutCRL(ctx, CRL{FusionSet: set, Number: n, DER: []byte(fmt.Sprint(n)), ThisUpdate: at, NextUpdate: at.Add(time.Hour), ETag: fmt.Sprint(n)})
	})
	return n, err
}

func TestCRLNumbersAndDue(t *testing.T) {
	certsDatabases(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if _, err := db.CRL(ctx, "bank"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CRL of a set without one: %v", err)
		}
		for _, set := range []string{"bank", "shop"} {
			if _, err := db.Exec(ctx, `INSERT INTO cas (fusion_set, cert_pem, key_sealed, fingerprint, not_after_ns, created_ns, source)
				VALUES (?, 'pem', ?, ?, 0, 0, 'generated')`, set, []byte("sealed"), "fp-"+set); err != nil {
				t.Fatal(err)
			}
		}
		due, err := db.CRLsDue(ctx, certsT0)
		if err != nil || fmt.Sprint(due) != "[bank shop]" {
			t.Fatalf("due without CRLs: %v, %v", due, err)
		}
		// A transaction that locks and rolls back leaves no CRL behind.
		boom := errors.New("boom")
		if err := db.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.LockCRL(ctx, "bank"); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if _, err := db.CRL(ctx, "bank"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CRL after a rolled back lock: %v", err)
		}
		if n, err := crlBump(ctx, db, "bank", certsT0); err != nil || n != 1 {
			t.Fatalf("first CRL number %d, %v", n, err)
		}
		c, err := db.CRL(ctx, "bank")
		if err != nil || c.Number != 1 || string(c.DER) != "1" || !c.NextUpdate.Equal(certsT0.Add(time.Hour)) {
			t.Fatalf("CRL %+v, %v", c, err)
		}
		// Due at half its validity, not before.
		if due, _ := db.CRLsDue(ctx, certsT0.Add(29*time.Minute)); fmt.Sprint(due) != "[shop]" {
			t.Fatalf("due at 29m: %v", due)
		}
		if due, _ := db.CRLsDue(ctx, certsT0.Add(31*time.Minute)); fmt.Sprint(due) != "[bank shop]" {
			t.Fatalf("due at 31m: %v", due)
		}
		// PutCRL refuses a number that is not newer.
		err = db.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.LockCRL(ctx, "bank"); err != nil {
				return err
			}
			return tx.PutCRL(ctx, CRL{FusionSet: "bank", Number: 1, DER: []byte("x"), ETag: "x"})
		})
		if err == nil {
			t.Fatal("a CRL number was reused")
		}
	})
}

// TestCRLNumbersStrictlyIncreaseAcrossInstances signs CRLs of one set from
// two PostgreSQL instances (two *DB on one database) at once: every number
// is taken once, none skipped, the last is the count.
func TestCRLNumbersStrictlyIncreaseAcrossInstances(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Shared(t).NewDatabase(t)
	var dbs []*DB
	for range 2 {
		db, err := Open(ctx, Options{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	const each = 15
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, db := range dbs {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each / 3 {
					n, err := crlBump(ctx, db, "bank", certsT0)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if seen[n] {
						errs <- fmt.Errorf("CRL number %d signed twice", n)
					}
					seen[n] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c, err := dbs[0].CRL(ctx, "bank")
	if err != nil || c.Number != 2*each || len(seen) != 2*each {
		t.Fatalf("last CRL %d (%v), %d numbers seen; want %d", c.Number, err, len(seen), 2*each)
	}
}
