package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/internal/pgtest"
)

// TestBackupPGWhileWriting backs up a PostgreSQL database while a writer
// runs, then restores the file into a new PostgreSQL database and into a
// new data directory: both hold the same consistent snapshot.
func TestBackupPGWhileWriting(t *testing.T) {
	ctx := context.Background()
	src, _ := openPG(t)
	w := startWriter(ctx, src, 0)
	w.waitFor(t, 30)
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := src.Backup(ctx, out); err != nil {
		w.halt(t)
		t.Fatal(err)
	}
	w.waitFor(t, w.n.Load()+10)
	total := w.halt(t)

	pgURL := pgtest.Shared(t).NewDatabase(t)
	if err := Restore(ctx, out, Options{URL: pgURL}); err != nil {
		t.Fatal(err)
	}
	toPG, err := Open(ctx, Options{URL: pgURL})
	if err != nil {
		t.Fatal(err)
	}
	defer toPG.Close()
	n := snapshotOf(t, src, toPG)
	if n < 30 || int64(n) >= total {
		t.Fatalf("snapshot holds %d of %d changes: not taken mid-run", n, total)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := Restore(ctx, out, Options{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	sameRows(t, toPG, openSQLiteT(t, dir))
	// The restored PostgreSQL database goes on from where the backup was.
	if err := writeOne(ctx, toPG, 1_000_000); err != nil {
		t.Fatal(err)
	}
	if entries, _, err := toPG.VerifyAudit(ctx); err != nil || entries != int64(n+1) {
		t.Fatalf("after a write: %d entries, %v", entries, err)
	}
}

// TestBackupMovesBetweenDatabases: SQLite → backup → PostgreSQL → backup →
// SQLite keeps every row exactly (bytes, NULLs, quotes, non-ASCII text).
func TestBackupMovesBetweenDatabases(t *testing.T) {
	ctx := context.Background()
	lite := openSQLiteT(t, t.TempDir())
	for i := range 25 {
		if err := writeOne(ctx, lite, i); err != nil {
			t.Fatal(err)
		}
	}
	first := filepath.Join(t.TempDir(), "from-sqlite.db")
	if err := lite.Backup(ctx, first); err != nil {
		t.Fatal(err)
	}
	pgURL := pgtest.Shared(t).NewDatabase(t)
	if err := Restore(ctx, first, Options{URL: pgURL}); err != nil {
		t.Fatal(err)
	}
	pg, err := Open(ctx, Options{URL: pgURL})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	sameRows(t, lite, pg)
	second := filepath.Join(t.TempDir(), "from-pg.db")
	if err := pg.Backup(ctx, second); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Restore(ctx, second, Options{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	sameRows(t, lite, openSQLiteT(t, dir))
}

// TestRestorePGRefusesNonEmpty: a database with rows, or with another
// application's tables, is left alone; an mcc schema with no rows (a
// failed restore, a server that never served) is taken.
func TestRestorePGRefusesNonEmpty(t *testing.T) {
	ctx := context.Background()
	lite := openSQLiteT(t, t.TempDir())
	if err := writeOne(ctx, lite, 1); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	if err := lite.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}

	used, usedURL := openPG(t)
	if err := writeOne(ctx, used, 7); err != nil {
		t.Fatal(err)
	}
	if err := Restore(ctx, backup, Options{URL: usedURL}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over rows: %v", err)
	}
	if got := dump(t, used)["tokens"]; len(got) != 1 || !strings.Contains(got[0], "0000000000000007") {
		t.Fatalf("target changed: %v", got)
	}

	other, otherURL := openPG(t)
	other.Close()
	foreign, err := openPostgres(otherURL)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	if _, err := foreign.Exec(ctx, `DROP TABLE events`); err != nil {
		t.Fatal(err)
	}
	if _, err := foreign.Exec(ctx, `CREATE TABLE invoices (id BIGINT)`); err != nil {
		t.Fatal(err)
	}
	if err := Restore(ctx, backup, Options{URL: otherURL}); err == nil || !strings.Contains(err.Error(), "invoices") {
		t.Fatalf("restore over another application's tables: %v", err)
	}

	_, emptyURL := openPG(t) // migrated, no rows
	if err := Restore(ctx, backup, Options{URL: emptyURL}); err != nil {
		t.Fatalf("restore into an empty mcc database: %v", err)
	}
}

// TestRestorePGPasswordNotInErrors: a wrong database URL says where, never
// the password.
func TestRestorePGPasswordNotInErrors(t *testing.T) {
	ctx := context.Background()
	lite := openSQLiteT(t, t.TempDir())
	backup := filepath.Join(t.TempDir(), "b.db")
	if err := lite.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	srv := pgtest.Shared(t)
	u := srv.NewDatabase(t)
	for _, bad := range []string{
		strings.Replace(u, srv.Password(), "An0therSecret", 1),
		strings.Replace(u, "/t_", "/absent_", 1),
	} {
		err := Restore(ctx, backup, Options{URL: bad})
		if err == nil {
			t.Fatalf("restore into %s succeeded", bad)
		}
		if strings.Contains(err.Error(), srv.Password()) || strings.Contains(err.Error(), "An0therSecret") {
			t.Fatalf("error carries the password: %v", err)
		}
	}
}
