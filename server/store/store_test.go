package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenSQLiteMigratesOnce(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil || v != LatestVersion() {
		t.Fatalf("schema version %d, %v; want %d", v, err, LatestVersion())
	}
	db.Close()
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", fi.Mode().Perm())
	}
	// A second open finds the schema current and changes nothing.
	db, err = Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("schema_migrations rows %d, %v", n, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_ns) VALUES (?, ?, ?)`, LatestVersion()+1, "future", 1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, Options{DataDir: dir}); err == nil {
		t.Fatal("a database from a newer mcc was opened")
	}
}

func TestAuditChain(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < 3; i++ {
		err := db.Tx(ctx, func(tx *Tx) error {
			_, err := tx.AppendAudit(ctx, AuditEntry{Actor: "ci", Action: AuditCertIssue, Subject: "certificate/ab", Detail: map[string]any{"n": i, "set": "bank"}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	n, head, err := db.VerifyAudit(ctx)
	if err != nil || n != 3 || head == genesis {
		t.Fatalf("verify: %d %s %v", n, head, err)
	}
	// Editing an entry breaks the chain.
	if _, err := db.Exec(ctx, `UPDATE audit SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.VerifyAudit(ctx); err == nil {
		t.Fatal("an edited audit entry verified")
	}
}

func TestRebind(t *testing.T) {
	if got := rebind(Postgres, "a = ? AND b = ?"); got != "a = $1 AND b = $2" {
		t.Fatal(got)
	}
	if got := rebind(SQLite, "a = ?"); got != "a = ?" {
		t.Fatal(got)
	}
}

// A database password never reaches an error text, whether it is in the
// URL's user part or in libpq's password parameter.
func TestConnectErrorHidesPassword(t *testing.T) {
	for _, u := range []string{
		"postgres://mcc:s3cret-user-part@127.0.0.1:1/mcc?connect_timeout=1",
		"postgres://mcc@127.0.0.1:1/mcc?connect_timeout=1&password=s3cret-param",
	} {
		_, err := Open(context.Background(), Options{URL: u})
		if err == nil {
			t.Fatalf("%s: connected to a closed port", u)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
