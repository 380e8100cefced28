package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// A backup is one SQLite file with mcc's schema, whatever the database it
// was taken from: the same file restores into a data directory or into a
// PostgreSQL database, so moving from one to the other is a backup and a
// restore.

// Backup writes a consistent snapshot of the database to outPath, an SQLite
// file created 0600 (an existing file is refused, never overwritten). It
// runs while the server serves: SQLite's VACUUM INTO reads one snapshot on
// a reader connection; PostgreSQL's tables are copied inside one
// REPEATABLE READ READ ONLY transaction. The snapshot is checked (integrity
// and audit chain) before Backup returns.
func (db *DB) Backup(ctx context.Context, outPath string) (err error) {
	out, err := filepath.Abs(outPath)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// Created here, exclusively and 0600, before SQLite writes into it:
	// VACUUM INTO accepts an empty file and keeps its mode.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("backup: %s already exists: refusing to overwrite it", out)
		}
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			removeSQLiteFiles(out)
		}
	}()
	switch db.dialect {
	case SQLite:
		err = db.vacuumInto(ctx, out)
	case Postgres:
		err = db.copyToSQLite(ctx, out)
	default:
		err = fmt.Errorf("unknown dialect %q", db.dialect)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := checkBackup(ctx, out); err != nil {
		return fmt.Errorf("backup: the snapshot does not check: %w", err)
	}
	if err := syncPath(out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// vacuumInto copies the SQLite database with VACUUM INTO: one read
// transaction, so one snapshot, and the writer is never blocked (WAL). It
// runs on a connection of its own: the pool's readers are query_only,
// which refuses VACUUM INTO even though it writes only the new file.
func (db *DB) vacuumInto(ctx context.Context, out string) error {
	conn, err := sql.Open("sqlite", "file:"+(&url.URL{Path: db.path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, out); err != nil {
		return fmt.Errorf("VACUUM INTO: %w", err)
	}
	return conn.Close()
}

// copyToSQLite copies every table of a PostgreSQL database, as seen by one
// REPEATABLE READ snapshot, into a new SQLite file with the same schema.
func (db *DB) copyToSQLite(ctx context.Context, out string) error {
	dst, err := openBackupFile(out)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := dst.migrate(ctx); err != nil {
		return err
	}
	src, err := db.read.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("beginning the snapshot: %w", err)
	}
	defer src.Rollback()
	if err := copyTables(ctx, src, dst); err != nil {
		return err
	}
	return dst.Close()
}

// Restore loads the backup at inPath into the database o names, which must
// be empty: for SQLite an empty or missing data directory, for PostgreSQL a
// database with no tables (or only mcc's, all empty: what a failed restore
// or a server that never served leaves). The backup is checked first
// (SQLite integrity, no triggers or views, schema exactly mcc's), migrated
// forward on a private copy when an older mcc wrote it, and the restored
// database's audit chain is verified. inPath itself is never modified.
func Restore(ctx context.Context, inPath string, o Options) error {
	if o.URL == "" && o.DataDir == "" {
		return errors.New("restore: give a data directory (--data) or a PostgreSQL URL (--database)")
	}
	if err := checkBackup(ctx, inPath); err != nil {
		return fmt.Errorf("restore: %s: %w", inPath, err)
	}
	if o.URL == "" {
		if err := requireEmptyDir(o.DataDir); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	tmp, err := os.MkdirTemp("", "mcc-restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, FileName)
	if err := copyFile(inPath, work); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	src, err := openBackupFile(work)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	if err := src.migrate(ctx); err != nil {
		return fmt.Errorf("restore: bringing the backup to this mcc's schema: %w", err)
	}
	if err := checkSchema(ctx, src, filepath.Join(tmp, "reference.db")); err != nil {
		return fmt.Errorf("restore: %s: %w", inPath, err)
	}
	if err := advanceCRLNumbers(ctx, src); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if o.URL != "" {
		return restorePostgres(ctx, src, o)
	}
	if err := src.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return restoreSQLite(ctx, work, o)
}

// restoreSQLite places the checked, migrated copy in the data directory
// and opens it the way the server will.
func restoreSQLite(ctx context.Context, work string, o Options) (err error) {
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	target := filepath.Join(o.DataDir, FileName)
	if err := copyFile(work, target); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			removeSQLiteFiles(target)
		}
	}()
	if err := syncPath(o.DataDir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db, err := Open(ctx, o)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer db.Close()
	if err := verifyRestored(ctx, db); err != nil {
		return err
	}
	return db.Close()
}

// restorePostgres copies every table of src into the PostgreSQL database
// in one transaction.
func restorePostgres(ctx context.Context, src *DB, o Options) error {
	dst, err := openPostgres(o.URL)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer dst.Close()
	dst.log = o.Logger
	if dst.log == nil {
		dst.log = zap.NewNop()
	}
	tables, err := sqliteTables(ctx, src.read)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := requireOnlyTables(ctx, dst, tables); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := dst.migrate(ctx); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	rtx, err := src.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer rtx.Rollback()
	if err := copyTables(ctx, rtx, dst); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return verifyRestored(ctx, dst)
}

// verifyRestored checks the restored database as the server will read it.
func verifyRestored(ctx context.Context, db *DB) error {
	if _, _, err := db.VerifyAudit(ctx); err != nil {
		return fmt.Errorf("restore: the restored audit log does not verify: %w", err)
	}
	if db.dialect == SQLite {
		if err := integrityCheck(ctx, db.read); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}

// table is one table of mcc's schema as SQLite describes it.
type table struct {
	name string
	cols []string
	blob []bool // cols[i] is BLOB/BYTEA
}

// sqliteTables lists the tables of an SQLite database in creation order
// (a later table may refer to an earlier one).
func sqliteTables(ctx context.Context, q querier) ([]table, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []table
	for _, n := range names {
		t := table{name: n}
		cols, err := q.QueryContext(ctx, `SELECT name, type FROM pragma_table_info(?) ORDER BY cid`, n)
		if err != nil {
			return nil, fmt.Errorf("columns of %s: %w", n, err)
		}
		for cols.Next() {
			var c, typ string
			if err := cols.Scan(&c, &typ); err != nil {
				cols.Close()
				return nil, err
			}
			t.cols = append(t.cols, c)
			t.blob = append(t.blob, strings.EqualFold(typ, "BLOB"))
		}
		cols.Close()
		if err := cols.Err(); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// querier is what a table copy reads from: a snapshot transaction or a
// pool.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// maxArgs bounds the placeholders of one batched INSERT (SQLite allows
// 32766, PostgreSQL 65535).
const maxArgs = 8000

// copyTables copies every table of mcc's schema from src into dst in one
// write transaction. dst must have the schema and no rows except its own
// schema_migrations, which the source's replace (they keep when each
// migration was first applied).
func copyTables(ctx context.Context, src querier, dst *DB) error {
	var tables []table
	var err error
	if dst.dialect == SQLite {
		tables, err = sqliteTables(ctx, dst.read)
	} else {
		// The backup side describes the tables; a PostgreSQL target has
		// just been migrated to the same schema.
		tables, err = sqliteTables(ctx, src)
	}
	if err != nil {
		return err
	}
	return dst.Tx(ctx, func(tx *Tx) error {
		for _, t := range tables {
			if t.name == "schema_migrations" {
				if _, err := tx.Exec(ctx, `DELETE FROM schema_migrations`); err != nil {
					return err
				}
				continue
			}
			if t.name == "event_seq" {
				// Migration 3 writes its one row (no number given yet); the
				// source's row replaces it, so numbering continues after
				// the restored events.
				if _, err := tx.Exec(ctx, `DELETE FROM event_seq WHERE last = 0`); err != nil {
					return err
				}
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM `+quoteIdent(t.name)).Scan(&n); err != nil {
				return fmt.Errorf("counting %s: %w", t.name, err)
			}
			if n != 0 {
				return fmt.Errorf("the target database is not empty: table %s has %d rows", t.name, n)
			}
		}
		for _, t := range tables {
			if err := copyTable(ctx, src, tx, t); err != nil {
				return fmt.Errorf("copying %s: %w", t.name, err)
			}
		}
		return nil
	})
}

// copyTable streams one table's rows into batched INSERTs.
func copyTable(ctx context.Context, src querier, tx *Tx, t table) error {
	cols := make([]string, len(t.cols))
	for i, c := range t.cols {
		cols[i] = quoteIdent(c)
	}
	rows, err := src.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+quoteIdent(t.name))
	if err != nil {
		return err
	}
	defer rows.Close()
	perBatch := max(1, maxArgs/len(cols))
	insert := func(n int) string {
		row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
		return `INSERT INTO ` + quoteIdent(t.name) + ` (` + strings.Join(cols, ", ") + `) VALUES ` +
			strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	}
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	args := make([]any, 0, perBatch*len(cols))
	flush := func() error {
		n := len(args) / len(cols)
		if n == 0 {
			return nil
		}
		var err error
		if n == perBatch {
			if full == nil {
				if full, err = tx.Prepare(ctx, insert(n)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.Exec(ctx, insert(n), args...)
		}
		args = args[:0]
		return err
	}
	vals, ptrs := scanRow(len(cols))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			args = append(args, columnValue(v, t.blob[i]))
		}
		if len(args) == perBatch*len(cols) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// scanRow makes Scan targets for a row of n columns of any type: vals
// holds the values after rows.Scan(ptrs...).
func scanRow(n int) (vals, ptrs []any) {
	vals, ptrs = make([]any, n), make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return vals, ptrs
}

// columnValue gives a value the Go type its column takes in both
// databases: bytes for BLOB/BYTEA, text for TEXT (SQLite may hand back
// either for either).
func columnValue(v any, blob bool) any {
	switch x := v.(type) {
	case string:
		if blob {
			return []byte(x)
		}
	case []byte:
		if !blob {
			return string(x)
		}
		return append([]byte(nil), x...) // the driver may reuse its buffer
	}
	return v
}

// quoteIdent quotes an identifier from our own schema for both dialects.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// requireOnlyTables refuses a PostgreSQL target holding tables that are
// not mcc's: restoring there would mix two applications' data.
func requireOnlyTables(ctx context.Context, db *DB, tables []table) error {
	ours := map[string]bool{}
	for _, t := range tables {
		ours[t.name] = true
	}
	rows, err := db.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
	if err != nil {
		return fmt.Errorf("listing the target's tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		if !ours[n] {
			return fmt.Errorf("the target database is not empty: it has a table %q that is not mcc's", n)
		}
	}
	return rows.Err()
}

// openBackupFile opens a backup file on one connection in rollback-journal
// mode, so it stays one self-contained file.
func openBackupFile(path string) (*DB, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=journal_mode(DELETE)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	conn.SetMaxOpenConns(1)
	db := &DB{dialect: SQLite, read: conn, write: conn, path: path, log: zap.NewNop()}
	if err := conn.Ping(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return db, nil
}

// checkBackup checks a backup file without changing it: SQLite's integrity
// check, an mcc schema version this binary can read, and no triggers or
// views (a backup is data; code hidden in one would run in the server).
func checkBackup(ctx context.Context, path string) error {
	if fi, err := os.Stat(path); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&immutable=1"
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	if err := integrityCheck(ctx, conn); err != nil {
		return err
	}
	var code int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type IN ('trigger', 'view')`).Scan(&code); err != nil {
		return fmt.Errorf("not an mcc backup: %w", err)
	}
	if code != 0 {
		return errors.New("not an mcc backup: it holds triggers or views")
	}
	var v int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return fmt.Errorf("not an mcc backup: %w", err)
	}
	switch {
	case v == 0:
		return errors.New("not an mcc backup: no schema version")
	case v > LatestVersion():
		return fmt.Errorf("schema version %d is newer than this mcc knows (%d): restore with a newer mcc", v, LatestVersion())
	}
	return nil
}

// integrityCheck runs SQLite's PRAGMA integrity_check.
func integrityCheck(ctx context.Context, q querier) error {
	rows, err := q.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check: %s", strings.Join(problems, "; "))
	}
	return nil
}

// checkSchema compares the schema of a (migrated) backup with a database
// this binary creates from nothing at ref: every table, column and index
// must be the same, nothing more.
func checkSchema(ctx context.Context, db *DB, ref string) error {
	fresh, err := openBackupFile(ref)
	if err != nil {
		return err
	}
	defer fresh.Close()
	if err := fresh.migrate(ctx); err != nil {
		return err
	}
	want, err := schemaOf(ctx, fresh.read)
	if err != nil {
		return err
	}
	got, err := schemaOf(ctx, db.read)
	if err != nil {
		return err
	}
	for name, sqlText := range got {
		if w, ok := want[name]; !ok {
			return fmt.Errorf("not an mcc backup: unexpected %s", name)
		} else if w != sqlText {
			return fmt.Errorf("not an mcc backup: %s differs from mcc's schema", name)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			return fmt.Errorf("not an mcc backup: %s is missing", name)
		}
	}
	return nil
}

// schemaOf maps "type name" to its SQL for every object of an SQLite file.
func schemaOf(ctx context.Context, q querier) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT type, name, COALESCE(sql, '') FROM sqlite_master`)
	if err != nil {
		return nil, fmt.Errorf("reading the schema: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			return nil, err
		}
		out[typ+" "+name] = text
	}
	return out, rows.Err()
}

// requireEmptyDir accepts a missing directory or one with no entries.
func requireEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("data directory %s is not empty: restore into a new directory", dir)
	}
	return nil
}

// copyFile copies src to a new file dst (0600; an existing dst is an
// error) and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

// syncPath flushes a file or directory to disk.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeSQLiteFiles removes a database file and its journal companions.
func removeSQLiteFiles(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// restoreCRLGap is added to every CRL number at restore. Gateways keep the
// highest CRL number they saw per CA and refuse a lower one as older; the
// server that ran after the backup was taken may have signed numbers the
// backup does not know, and without the gap the restored server's next
// CRLs would be refused for as many revocations. 2^32 revocations of one
// set between a backup and its restore is beyond any real use.
const restoreCRLGap = 1 << 32

// advanceCRLNumbers moves every CRL number of the restored copy past any
// the lost period can have used and marks each CRL due, so the server's
// first housekeeping pass signs and publishes it at once.
func advanceCRLNumbers(ctx context.Context, db *DB) error {
	if _, err := db.Exec(ctx, `UPDATE crls SET number = number + ?, next_update_ns = this_update_ns`, int64(restoreCRLGap)); err != nil {
		return fmt.Errorf("advancing CRL numbers: %w", err)
	}
	return nil
}
