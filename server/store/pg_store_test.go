package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

// openPG opens a store on a fresh database of the shared real cluster.
func openPG(t *testing.T) (*DB, string) {
	t.Helper()
	u := pgtest.Shared(t).NewDatabase(t)
	db, err := Open(context.Background(), Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, u
}

func TestPGOpenMigratesOnce(t *testing.T) {
	ctx := context.Background()
	db, u := openPG(t)
	if db.Dialect() != Postgres {
		t.Fatalf("dialect %s", db.Dialect())
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v != LatestVersion() {
		t.Fatalf("schema version %d, %v; want %d", v, err, LatestVersion())
	}
	again, err := Open(ctx, Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var n int
	if err := again.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("schema_migrations rows %d, %v", n, err)
	}
}

// TestPGConcurrentOpen starts several instances on one new database at
// once, as a load balancer's servers do: the advisory lock lets one
// migrate and the others find the work done.
func TestPGConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Shared(t).NewDatabase(t)
	const instances = 4
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := Open(ctx, Options{URL: u})
			if err == nil {
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// Seen before the fix: CREATE TABLE IF NOT EXISTS schema_migrations
		// outside the migration lock races (duplicate pg_type key).
		t.Fatalf("instances starting at once on one new database: %v", err)
	}
	db, err := Open(ctx, Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("schema_migrations rows %d, %v; want %d", n, err, len(migrations))
	}
}

func TestPGNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	db, u := openPG(t)
	if _, err := db.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_ns) VALUES (?, ?, ?)`, LatestVersion()+1, "future", 1); err != nil {
		t.Fatal(err)
	}
	if db2, err := Open(ctx, Options{URL: u}); err == nil {
		db2.Close()
		t.Fatal("a database from a newer mcc was opened")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("unexpected refusal: %v", err)
	}
}

// TestPGAuditChainTwoInstances appends from two *DB on one database, each
// with several goroutines: the chain must have no gap and no fork.
func TestPGAuditChainTwoInstances(t *testing.T) {
	ctx := context.Background()
	a, u := openPG(t)
	b, err := Open(ctx, Options{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const perWriter, writersPerDB = 20, 3
	var wg sync.WaitGroup
	errc := make(chan error, 2*writersPerDB)
	for _, db := range []*DB{a, b} {
		for w := range writersPerDB {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					err := db.Tx(ctx, func(tx *Tx) error {
						_, err := tx.AppendAudit(ctx, AuditEntry{Actor: fmt.Sprintf("w%d", w), Action: AuditCertIssue,
							Subject: "certificate/ab", Detail: map[string]any{"i": i}})
						return err
					})
					if err != nil {
						errc <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	const want = 2 * writersPerDB * perWriter
	for _, db := range []*DB{a, b} {
		n, head, err := db.VerifyAudit(ctx)
		if err != nil || n != want || head == genesis {
			t.Fatalf("verify: %d entries, head %s, %v; want %d", n, head, err, want)
		}
	}
	var maxSeq, count int64
	if err := a.QueryRow(ctx, `SELECT MAX(seq), COUNT(*) FROM audit`).Scan(&maxSeq, &count); err != nil || maxSeq != want || count != want {
		t.Fatalf("max seq %d, count %d, %v", maxSeq, count, err)
	}
}

// TestPGTxAndConstraints: rollback on error, unique violations recognised,
// BYTEA and NULL round trips, `?` rebinding with many arguments.
func TestPGTxAndConstraints(t *testing.T) {
	ctx := context.Background()
	db, _ := openPG(t)
	insert := `INSERT INTO tokens (id, name, hash, scopes, created_ns, expires_ns, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`
	hash := []byte{0, 1, 2, 0xff, 0x00, 'x'}
	now := time.Date(2026, 12, 5, 9, 0, 0, 123456789, time.UTC)
	errBoom := errors.New("boom")
	err := db.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, insert, "0000000000000001", "rolled-back", hash, "read", NS(now), NullNS(time.Time{}), "test"); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Tx returned %v", err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rolled back row visible: %d %v", n, err)
	}
	if _, err := db.Exec(ctx, insert, "0000000000000001", "ci", hash, "read", NS(now), NullNS(time.Time{}), "test"); err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(ctx, insert, "0000000000000002", "ci", hash, "read", NS(now), NullNS(now), "test")
	if err == nil || !IsUniqueViolation(err) {
		t.Fatalf("duplicate name: %v (unique violation: %v)", err, IsUniqueViolation(err))
	}
	if IsUniqueViolation(errBoom) {
		t.Fatal("any error is a unique violation")
	}
	var got []byte
	var created int64
	var expires sql.NullInt64
	if err := db.QueryRow(ctx, `SELECT hash, created_ns, expires_ns FROM tokens WHERE id = ?`, "0000000000000001").Scan(&got, &created, &expires); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(hash) || !Time(created).Equal(now) || !NullTime(expires).IsZero() {
		t.Fatalf("read back %x %v %v", got, Time(created), NullTime(expires))
	}
}

func TestPGPasswordNeverInErrors(t *testing.T) {
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	wrong := strings.Replace(u, srv.Password(), "Wr0ngSecretPassw0rd", 1)
	for _, bad := range []string{wrong, strings.Replace(u, "/t_", "/missing_", 1)} {
		db, err := Open(context.Background(), Options{URL: bad})
		if err == nil {
			db.Close()
			t.Fatalf("opened %s", bad)
		}
		for _, secret := range []string{srv.Password(), "Wr0ngSecretPassw0rd"} {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error carries the password: %v", err)
			}
		}
	}
}
