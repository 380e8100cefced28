package pgtest

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestSharedDatabasesAreSeparate runs real SQL on two databases of the
// shared cluster: a table made in one is not in the other.
func TestSharedDatabasesAreSeparate(t *testing.T) {
	srv := Shared(t)
	ctx := context.Background()
	a, b := srv.NewDatabase(t), srv.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %s twice", a)
	}
	if !strings.Contains(a, srv.Password()) || srv.Password() == "" {
		t.Fatal("the URL does not carry the password")
	}
	dba := openDB(t, a)
	if _, err := dba.ExecContext(ctx, `CREATE TABLE only_in_a (x BIGINT)`); err != nil {
		t.Fatal(err)
	}
	dbb := openDB(t, b)
	var n int
	if err := dbb.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'only_in_a'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("table of database a seen in b: %d %v", n, err)
	}
	// URL of an existing database does not recreate it.
	u, err := url.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.URL(t, strings.TrimPrefix(u.Path, "/")); got != a {
		t.Fatalf("URL %s, want %s", got, a)
	}
	if err := openDB(t, a).QueryRowContext(ctx, `SELECT COUNT(*) FROM only_in_a`).Scan(&n); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordRequired proves the cluster checks the password: a wrong one
// is refused, so the URL's password is what lets tests in.
func TestPasswordRequired(t *testing.T) {
	srv := Shared(t)
	good := srv.NewDatabase(t)
	bad := strings.Replace(good, srv.Password(), "wrong"+srv.Password()[5:], 1)
	db, err := sql.Open("pgx", bad)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(context.Background()); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

// TestBadDatabaseName refuses names that would need quoting.
func TestBadDatabaseName(t *testing.T) {
	srv := Shared(t)
	for _, name := range []string{"", "A", `x"; DROP DATABASE postgres; --`, strings.Repeat("a", 64)} {
		if err := srv.ensureDatabase(name); err == nil {
			t.Errorf("database name %q accepted", name)
		}
	}
}

// TestStartStop runs a private cluster and stops it: its port closes and
// its directory is gone.
func TestStartStop(t *testing.T) {
	srv := Start(t)
	dsn := srv.NewDatabase(t)
	db := openDB(t, dsn)
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := srv.dir
	srv.Stop()
	// A fresh connection (not the pool's) must be refused.
	if err := openDB(t, dsn).PingContext(context.Background()); err == nil {
		t.Fatal("the cluster still answers after Stop")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory %s still there: %v", dir, err)
	}
	srv.Stop() // twice is fine
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
