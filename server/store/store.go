// Package store is mcc server's database: SQLite (a pure-Go driver, one file
// in the data directory, the embedded default) or PostgreSQL (several
// server instances behind a load balancer). Both run the same versioned
// migrations at open and the same queries: SQL is written once with `?`
// placeholders, rebound to `$n` for PostgreSQL, and times are BIGINT unix
// nanoseconds, so no query depends on a dialect's date functions.
//
// Each area keeps its queries in its own file (tokens.go, sets.go,
// certs.go, events.go, ...); this file holds only what every area shares.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"go.uber.org/zap"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names the database behind a DB.
type Dialect string

// The two databases mcc server runs on.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// FileName is the SQLite database inside the data directory.
const FileName = "mcc.db"

// ErrNotFound is wrapped by queries that find no row.
var ErrNotFound = errors.New("not found")

// Options says which database to open.
type Options struct {
	// DataDir holds the SQLite file (DataDir/mcc.db); created 0700.
	DataDir string
	// URL is a postgres:// or postgresql:// URL; it wins over DataDir.
	URL    string
	Logger *zap.Logger
}

// DB is an open, migrated database. Reads go to a pool of connections;
// writes to the write pool, which for SQLite is a single connection that
// begins every transaction IMMEDIATE, so writers queue in Go instead of
// failing with SQLITE_BUSY halfway through a transaction.
type DB struct {
	dialect Dialect
	read    *sql.DB
	write   *sql.DB
	log     *zap.Logger
	path    string // SQLite file; "" for PostgreSQL
}

// Open opens the database and brings its schema to the newest version this
// binary knows. A database written by a newer mcc is refused rather than
// used half-understood.
func Open(ctx context.Context, o Options) (*DB, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var db *DB
	var err error
	switch {
	case o.URL != "":
		db, err = openPostgres(o.URL)
	case o.DataDir != "":
		db, err = openSQLite(o.DataDir)
	default:
		return nil, errors.New("database: give a data directory (--data) or a PostgreSQL URL (--database)")
	}
	if err != nil {
		return nil, err
	}
	db.log = log
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func openSQLite(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("database: creating data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// Create the file 0600 before the driver does (it would use the umask).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	info, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if info.Size() == 0 {
		if err := initSQLitePageSize(path); err != nil {
			return nil, err
		}
	}
	return openSQLiteFile(path)
}

// sqlitePageSize is the page size of a new database. 16 KiB rather than
// SQLite's 4 KiB: event ingest writes whole pages to the WAL, one system
// call each, and larger pages cut those calls by four (bench/server
// ingest: 12,900 -> 13,900 events/s on its own). It must be set before
// WAL mode is, so a new file gets it in a connection of its own.
const sqlitePageSize = 16384

func initSQLitePageSize(path string) error {
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+fmt.Sprintf("?_pragma=page_size(%d)", sqlitePageSize))
	if err != nil {
		return fmt.Errorf("database: creating %s: %w", path, err)
	}
	defer db.Close()
	// The page size is fixed when the first page is written.
	if _, err := db.Exec(`CREATE TABLE mcc_page_size_probe (x INTEGER); DROP TABLE mcc_page_size_probe`); err != nil {
		return fmt.Errorf("database: creating %s: %w", path, err)
	}
	return nil
}

// openSQLiteFile opens an existing SQLite file with mcc's settings: WAL
// (readers never block the writer), a busy timeout for the rare reader
// that meets a checkpoint, foreign keys on, synchronous=NORMAL (WAL keeps
// the database consistent across a power loss; the last commits may be
// lost, never half-applied).
func openSQLiteFile(path string) (*DB, error) {
	base := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	// The one writer keeps 64 MiB of pages (the events indexes' hot ends)
	// and checkpoints every 20,000 WAL pages rather than 1,000: ingest
	// writes each page once per batch instead of once per checkpoint.
	write, err := sql.Open("sqlite", base+"&_txlock=immediate&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(20000)")
	if err != nil {
		return nil, fmt.Errorf("database: opening %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	read, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("database: opening %s: %w", path, err)
	}
	read.SetMaxOpenConns(8)
	db := &DB{dialect: SQLite, read: read, write: write, path: path}
	if err := write.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("database: opening %s: %w", path, err)
	}
	return db, nil
}

func openPostgres(u string) (*DB, error) {
	if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		return nil, errors.New("database: --database takes a postgres:// URL")
	}
	pool, err := sql.Open("pgx", u)
	if err != nil {
		return nil, fmt.Errorf("database: %s", redactURL(u))
	}
	pool.SetMaxOpenConns(16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		// The driver's error can carry the URL; say where without the password.
		return nil, fmt.Errorf("database: connecting to %s: %s", redactURL(u), redactErr(err, u))
	}
	return &DB{dialect: Postgres, read: pool, write: pool}, nil
}

// redactURL drops the password from a database URL for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the database URL (unparsable)"
	}
	if q := p.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		p.RawQuery = q.Encode()
	}
	return p.Redacted()
}

// redactErr removes the URL's password from an error text.
func redactErr(err error, u string) string {
	msg := err.Error()
	if p, perr := url.Parse(u); perr == nil {
		if pw, ok := p.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		// libpq also takes the password as a parameter.
		if pw := p.Query().Get("password"); pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// Dialect says which database this is.
func (db *DB) Dialect() Dialect { return db.dialect }

// Path is the SQLite file ("" for PostgreSQL).
func (db *DB) Path() string { return db.path }

// Close closes both pools.
func (db *DB) Close() error {
	var errs []error
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.write != nil && db.write != db.read {
		errs = append(errs, db.write.Close())
	}
	return errors.Join(errs...)
}

// Query runs a read query (`?` placeholders).
func (db *DB) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.read.QueryContext(ctx, rebind(db.dialect, q), args...)
}

// QueryRow runs a read query returning one row.
func (db *DB) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return db.read.QueryRowContext(ctx, rebind(db.dialect, q), args...)
}

// Exec runs one write statement outside a transaction.
func (db *DB) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return db.write.ExecContext(ctx, rebind(db.dialect, q), args...)
}

// Tx is a write transaction.
type Tx struct {
	tx      *sql.Tx
	dialect Dialect
}

// Dialect says which database the transaction runs on.
func (tx *Tx) Dialect() Dialect { return tx.dialect }

// Query runs a query inside the transaction.
func (tx *Tx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, rebind(tx.dialect, q), args...)
}

// QueryRow runs a one-row query inside the transaction.
func (tx *Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, rebind(tx.dialect, q), args...)
}

// Exec runs a statement inside the transaction.
func (tx *Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, rebind(tx.dialect, q), args...)
}

// Prepare prepares a statement for repeated use inside the transaction
// (batch inserts).
func (tx *Tx) Prepare(ctx context.Context, q string) (*sql.Stmt, error) {
	return tx.tx.PrepareContext(ctx, rebind(tx.dialect, q))
}

// txAttempts bounds retries of a transaction that lost a race (PostgreSQL
// serialization failure or deadlock, SQLite busy).
const txAttempts = 3

// Tx runs fn in a write transaction and commits it; an error from fn rolls
// back. A transaction that lost a race with another writer is run again,
// so fn must not have effects outside the transaction.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	var err error
	for attempt := 0; attempt < txAttempts; attempt++ {
		if err = db.tx(ctx, fn); err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (db *DB) tx(ctx context.Context, fn func(tx *Tx) error) error {
	stx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("database: begin: %w", err)
	}
	if err := fn(&Tx{tx: stx, dialect: db.dialect}); err != nil {
		stx.Rollback()
		return err
	}
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("database: commit: %w", err)
	}
	return nil
}

// retryable reports a transaction that failed only because another writer
// won: PostgreSQL 40001 (serialization failure) or 40P01 (deadlock), SQLite
// BUSY or LOCKED.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// IsUniqueViolation reports an insert that met a UNIQUE or PRIMARY KEY
// constraint (PostgreSQL 23505, SQLite CONSTRAINT_UNIQUE/PRIMARYKEY).
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsInvalidText reports whether err is the database refusing a text value
// it cannot store (PostgreSQL: a NUL byte or invalid UTF-8; SQLite stores
// any bytes). The API checks what it can name a field for first; this is
// the net under it, so such input is a 422 and never a 500.
func IsInvalidText(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "22021", // character_not_in_repertoire (invalid UTF-8)
			"22P05": // untranslatable_character (NUL)
			return true
		}
	}
	return false
}

// rebind turns `?` placeholders into PostgreSQL's `$1, $2, ...`. mcc's SQL
// has no `?` inside string literals, so a plain scan is enough.
func rebind(d Dialect, q string) string {
	if d != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(fmt.Sprint(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// NS is how times are stored: unix nanoseconds, UTC.
func NS(t time.Time) int64 { return t.UTC().UnixNano() }

// Time reads a stored time.
func Time(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// NullNS stores an optional time (zero is NULL).
func NullNS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: NS(t), Valid: true}
}

// NullTime reads an optional time (NULL is zero).
func NullTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return Time(n.Int64)
}
