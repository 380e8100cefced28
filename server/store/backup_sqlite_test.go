package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openSQLiteT(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestBackupSQLiteWhileWriting backs up while a goroutine keeps writing,
// restores into a new data directory, and finds a consistent snapshot.
func TestBackupSQLiteWhileWriting(t *testing.T) {
	ctx := context.Background()
	src := openSQLiteT(t, filepath.Join(t.TempDir(), "data"))
	w := startWriter(ctx, src, 0)
	w.waitFor(t, 50)
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := src.Backup(ctx, out); err != nil {
		w.halt(t)
		t.Fatal(err)
	}
	w.waitFor(t, w.n.Load()+20) // the writer went on during and after the backup
	total := w.halt(t)

	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
	}
	for _, side := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(out + side); err == nil {
			t.Errorf("backup left %s beside it: a backup is one file", out+side)
		}
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(ctx, out, Options{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	restored := openSQLiteT(t, dir)
	n := snapshotOf(t, src, restored)
	if n < 50 || int64(n) >= total {
		t.Fatalf("snapshot holds %d of %d changes: not taken mid-run", n, total)
	}
	// The restored database is live: it takes writes and its chain goes on.
	if err := writeOne(ctx, restored, 1_000_000); err != nil {
		t.Fatal(err)
	}
	if entries, _, err := restored.VerifyAudit(ctx); err != nil || entries != int64(n+1) {
		t.Fatalf("after a write: %d entries, %v", entries, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored file: %v %v", fi, err)
	}
}

// TestBackupRefusesExistingFile never overwrites: an existing file (an
// older backup, or a file an attacker planted) stays as it was.
func TestBackupRefusesExistingFile(t *testing.T) {
	ctx := context.Background()
	src := openSQLiteT(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(out, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Backup(ctx, out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("Backup over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatalf("existing file changed: %q", b)
	}
	// A failed backup leaves nothing behind.
	bad := filepath.Join(t.TempDir(), "missing-dir", "backup.db")
	if err := src.Backup(ctx, bad); err == nil {
		t.Fatal("backup into a missing directory succeeded")
	}
}

// TestRestoreRefusesNonEmptyDataDir keeps an existing data directory as it
// was.
func TestRestoreRefusesNonEmptyDataDir(t *testing.T) {
	ctx := context.Background()
	src := openSQLiteT(t, t.TempDir())
	if err := writeOne(ctx, src, 1); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := src.Backup(ctx, out); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kek.key"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Restore(ctx, out, Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		t.Fatal("restore wrote into a non-empty directory")
	}
	// An existing database too.
	live := t.TempDir()
	openSQLiteT(t, live).Close()
	if err := Restore(ctx, out, Options{DataDir: live}); err == nil {
		t.Fatal("restore over an existing database")
	}
	if err := Restore(ctx, out, Options{}); err == nil {
		t.Fatal("restore with no target")
	}
}

// TestRestoreRefusesBadBackups: what is not an untouched mcc backup is
// refused before anything is written.
func TestRestoreRefusesBadBackups(t *testing.T) {
	ctx := context.Background()
	good := filepath.Join(t.TempDir(), "good.db")
	src := openSQLiteT(t, t.TempDir())
	if err := writeOne(ctx, src, 1); err != nil {
		t.Fatal(err)
	}
	if err := src.Backup(ctx, good); err != nil {
		t.Fatal(err)
	}
	// tamper copies the good backup and runs SQL on the copy.
	tamper := func(t *testing.T, stmts ...string) string {
		p := filepath.Join(t.TempDir(), "bad.db")
		if err := copyFile(good, p); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		return p
	}
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 100)), 0o600)
	truncated := filepath.Join(t.TempDir(), "truncated.db")
	b, _ := os.ReadFile(good)
	os.WriteFile(truncated, b[:len(b)/2], 0o600)
	cases := []struct{ name, path, want string }{
		{"garbage", garbage, "not a database"},
		{"truncated", truncated, "malformed"},
		{"missing", filepath.Join(t.TempDir(), "nope.db"), "no such file"},
		{"directory", t.TempDir(), "not a regular file"},
		{"trigger", tamper(t, `CREATE TRIGGER evil AFTER INSERT ON certificates BEGIN DELETE FROM audit; END`), "triggers or views"},
		{"view", tamper(t, `CREATE VIEW v AS SELECT * FROM tokens`), "triggers or views"},
		{"newer", tamper(t, `INSERT INTO schema_migrations (version, name, applied_ns) VALUES (999, 'future', 1)`), "newer"},
		{"extra table", tamper(t, `CREATE TABLE extra (x TEXT)`), "unexpected table extra"},
		{"changed column", tamper(t, `ALTER TABLE tokens ADD COLUMN secret TEXT`), "table tokens differs"},
		{"dropped index", tamper(t, `DROP INDEX event_index_external`), "index event_index_external is missing"},
		{"no schema", tamper(t, `DROP TABLE schema_migrations`), "not an mcc backup"},
		{"edited audit", tamper(t, `UPDATE audit SET actor = 'mallory'`), "audit"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			err := Restore(ctx, c.path, Options{DataDir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore: %v; want an error with %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
				t.Fatal("a refused restore left a database")
			}
		})
	}
	// The good one restores.
	if err := Restore(ctx, good, Options{DataDir: filepath.Join(t.TempDir(), "data")}); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreAdvancesCRLNumbers: a restored server signs CRL numbers past
// any the lost period after the backup can have used (gateways refuse a
// lower number from a CA they follow), and re-signs each CRL at once.
func TestRestoreAdvancesCRLNumbers(t *testing.T) {
	ctx := context.Background()
	src := openSQLiteT(t, filepath.Join(t.TempDir(), "data"))
	this := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	err := src.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.LockCRL(ctx, "bank-prod"); err != nil {
			return err
		}
		return tx.PutCRL(ctx, CRL{FusionSet: "bank-prod", Number: 7, DER: []byte("der"), ThisUpdate: this, NextUpdate: this.Add(7 * 24 * time.Hour), ETag: "e"})
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := src.Backup(ctx, out); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(ctx, out, Options{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	got, err := openSQLiteT(t, dir).CRL(ctx, "bank-prod")
	if err != nil {
		t.Fatal(err)
	}
	if got.Number != 7+restoreCRLGap || !got.NextUpdate.Equal(got.ThisUpdate) || string(got.DER) != "der" {
		t.Fatalf("restored CRL number %d, next update %s (this update %s)", got.Number, got.NextUpdate, got.ThisUpdate)
	}
	// The backup itself is left as it was.
	if orig, err := src.CRL(ctx, "bank-prod"); err != nil || orig.Number != 7 {
		t.Fatalf("source CRL %d, %v", orig.Number, err)
	}
}
