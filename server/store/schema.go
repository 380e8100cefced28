package store

import (
	"context"
	"fmt"
	"strings"
)

// migration is one versioned schema change. Migrations are append-only:
// a released migration is never edited, a change is a new version.
type migration struct {
	version int
	name    string
	sql     string // `{{blob}}` and `{{seqkey}}`: see dialectSQL
}

// migrations are applied in order, each in its own transaction.
var migrations = []migration{
	{1, "initial schema", schemaV1},
	{2, "install certificates and enrollments", schemaV2},
	{3, "console: event sequence, per-minute rollups, sessions", schemaV3},
	{4, "events: deferred indexes on addresses, devices, serials and request ids", schemaV4},
	{5, "console: gateway instances seen through their events", schemaV5},
}

// LatestVersion is the schema version this binary writes.
func LatestVersion() int { return migrations[len(migrations)-1].version }

const schemaV1 = `
CREATE TABLE tokens (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL UNIQUE,
	hash {{blob}} NOT NULL,
	scopes TEXT NOT NULL,
	created_ns BIGINT NOT NULL,
	expires_ns BIGINT,
	last_used_ns BIGINT,
	revoked_ns BIGINT,
	created_by TEXT NOT NULL
);
CREATE TABLE audit (
	seq BIGINT PRIMARY KEY,
	time_ns BIGINT NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	subject TEXT NOT NULL,
	detail TEXT NOT NULL,
	prev TEXT NOT NULL,
	hash TEXT NOT NULL UNIQUE
);
CREATE TABLE cas (
	fusion_set TEXT PRIMARY KEY,
	cert_pem TEXT NOT NULL,
	key_sealed {{blob}} NOT NULL,
	fingerprint TEXT NOT NULL,
	not_after_ns BIGINT NOT NULL,
	created_ns BIGINT NOT NULL,
	source TEXT NOT NULL
);
CREATE TABLE fusion_set_versions (
	fusion_set TEXT NOT NULL,
	version BIGINT NOT NULL,
	document TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	created_ns BIGINT NOT NULL,
	actor TEXT NOT NULL,
	comment TEXT NOT NULL,
	changes TEXT NOT NULL,
	PRIMARY KEY (fusion_set, version)
);
CREATE TABLE certificates (
	serial TEXT PRIMARY KEY,
	sha256 TEXT NOT NULL UNIQUE,
	fusion_set TEXT NOT NULL,
	app_id TEXT NOT NULL,
	build_id TEXT NOT NULL,
	kind TEXT NOT NULL,
	profile TEXT NOT NULL,
	not_before_ns BIGINT NOT NULL,
	not_after_ns BIGINT NOT NULL,
	issued_ns BIGINT NOT NULL,
	issued_by TEXT NOT NULL,
	cert_pem TEXT NOT NULL,
	record TEXT NOT NULL,
	revoked_ns BIGINT,
	revocation_reason TEXT,
	revoked_by TEXT
);
CREATE UNIQUE INDEX cas_fingerprint ON cas (fingerprint);
CREATE INDEX certificates_set_issued ON certificates (fusion_set, issued_ns, serial);
CREATE INDEX certificates_build ON certificates (fusion_set, app_id, build_id, issued_ns, serial);
CREATE INDEX certificates_revoked ON certificates (fusion_set, issued_ns, serial) WHERE revoked_ns IS NOT NULL;
CREATE INDEX certificates_not_after ON certificates (not_after_ns);
CREATE INDEX certificates_issued ON certificates (issued_ns, serial);
CREATE TABLE idempotency (
	token_id TEXT NOT NULL,
	key TEXT NOT NULL,
	request_sha256 TEXT NOT NULL,
	state TEXT NOT NULL,
	status INTEGER NOT NULL,
	response_sealed {{blob}},
	created_ns BIGINT NOT NULL,
	PRIMARY KEY (token_id, key)
);
CREATE TABLE crls (
	fusion_set TEXT PRIMARY KEY,
	number BIGINT NOT NULL,
	der {{blob}} NOT NULL,
	this_update_ns BIGINT NOT NULL,
	next_update_ns BIGINT NOT NULL,
	etag TEXT NOT NULL
);
CREATE TABLE events (
	id TEXT PRIMARY KEY,
	time_ns BIGINT NOT NULL,
	received_ns BIGINT NOT NULL,
	fusion_set TEXT NOT NULL,
	reason TEXT NOT NULL,
	action TEXT NOT NULL,
	client_ip TEXT NOT NULL,
	device_id TEXT NOT NULL,
	serial TEXT NOT NULL,
	cert_sha256 TEXT NOT NULL,
	external_id TEXT NOT NULL,
	build_id TEXT NOT NULL,
	app_id TEXT NOT NULL,
	doc TEXT NOT NULL
);
CREATE INDEX events_time ON events (time_ns, id);
CREATE INDEX events_set_time ON events (fusion_set, time_ns, id);
CREATE INDEX events_reason_time ON events (reason, time_ns, id);
CREATE INDEX events_client_time ON events (client_ip, time_ns, id);
CREATE INDEX events_device_time ON events (device_id, time_ns, id);
CREATE INDEX events_serial_time ON events (serial, time_ns, id);
CREATE INDEX events_external ON events (external_id);
`

// schemaV2 adds install certificates (enrollment, issue 13): an install
// certificate is a row of certificates with kind "install", its install
// id, and the serial of the build certificate it was enrolled with (kept
// through renewals), so every install of a build is found by one index.
// enrollments is one row per enrollment or renewal: what the per-build and
// per-address limits count, and (renews, unique) what stops one install
// certificate from being renewed twice.
const schemaV2 = `
ALTER TABLE certificates ADD COLUMN install_id TEXT;
ALTER TABLE certificates ADD COLUMN build_serial TEXT;
CREATE INDEX certificates_install ON certificates (fusion_set, install_id, issued_ns) WHERE install_id IS NOT NULL;
CREATE INDEX certificates_build_serial ON certificates (build_serial) WHERE build_serial IS NOT NULL;
CREATE TABLE enrollments (
	serial TEXT PRIMARY KEY,
	fusion_set TEXT NOT NULL,
	build_serial TEXT NOT NULL,
	address TEXT NOT NULL,
	install_id TEXT NOT NULL,
	renews TEXT UNIQUE,
	time_ns BIGINT NOT NULL
);
CREATE INDEX enrollments_build ON enrollments (build_serial, time_ns) WHERE renews IS NULL;
CREATE INDEX enrollments_address ON enrollments (fusion_set, address, time_ns) WHERE renews IS NULL;
`

// schemaV3 is what the console needs (issue 14). events.seq is the
// order in which events were committed, the cursor of the live feed
// (Last-Event-ID): event_seq holds the last number given, and the row lock
// InsertEvents takes on it also orders the inserting transactions, so a
// reader never sees seq n+1 before n. Existing events are numbered in the
// order they were received. event_rollups counts events per minute of
// their own time, fusion set, reason and action; the overview reads it
// instead of the raw events, which retention may purge. console_sessions
// holds signed-in browsers by the SHA-256 of their session id.
const schemaV3 = `
ALTER TABLE events ADD COLUMN seq BIGINT;
UPDATE events SET seq = numbered.n FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY received_ns, id) AS n FROM events) AS numbered WHERE events.id = numbered.id;
CREATE UNIQUE INDEX events_seq ON events (seq);
CREATE TABLE event_seq (
	one INTEGER PRIMARY KEY CHECK (one = 1),
	last BIGINT NOT NULL
);
INSERT INTO event_seq (one, last) SELECT 1, COALESCE(MAX(seq), 0) FROM events;
CREATE TABLE event_rollups (
	minute_ns BIGINT NOT NULL,
	fusion_set TEXT NOT NULL,
	reason TEXT NOT NULL,
	action TEXT NOT NULL,
	count BIGINT NOT NULL,
	PRIMARY KEY (minute_ns, fusion_set, reason, action)
);
INSERT INTO event_rollups (minute_ns, fusion_set, reason, action, count)
	SELECT time_ns - time_ns % 60000000000, fusion_set, reason, action, COUNT(*) FROM events
	GROUP BY time_ns - time_ns % 60000000000, fusion_set, reason, action;
CREATE TABLE console_sessions (
	id_hash {{blob}} PRIMARY KEY,
	token_id TEXT NOT NULL,
	token_name TEXT NOT NULL,
	scopes TEXT NOT NULL,
	created_ns BIGINT NOT NULL,
	expires_ns BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_ns);
CREATE INDEX certificates_set_builds ON certificates (fusion_set, issued_ns, serial) WHERE kind = 'build';
`

// schemaV4 moves the four indexes whose keys arrive in no order (client
// address, device id, certificate serial, request id) off the events
// table. On SQLite every new entry in them dirtied a random page, and each
// dirty page is written whole to the log at commit (500 events dirtied
// about 1,500 pages, counted with three of them), which held ingest near
// 9,000 events/s. events is now only
// appended to, and keyed by seq (the rowid on SQLite, one index fewer per
// event); event_index holds those four keys per event, keyed by the same
// seq, with the four indexes, and is filled by the indexer
// (IndexPendingEvents) in runs of many events, where an index page gets
// many entries and is written once. The events numbered after the last
// indexed seq are the pending ones. Events an older mcc stored without a
// number while migration 3 ran elsewhere (several instances on one
// PostgreSQL) are numbered first, after the others.
const schemaV4 = `
UPDATE events SET seq = numbered.n + (SELECT last FROM event_seq WHERE one = 1)
	FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY received_ns, id) AS n FROM events WHERE seq IS NULL) AS numbered
	WHERE events.id = numbered.id;
UPDATE event_seq SET last = (SELECT MAX(seq) FROM events) WHERE one = 1 AND last < (SELECT COALESCE(MAX(seq), 0) FROM events);
CREATE TABLE events_v4 (
	seq {{seqkey}},
	id TEXT NOT NULL UNIQUE,
	time_ns BIGINT NOT NULL,
	received_ns BIGINT NOT NULL,
	fusion_set TEXT NOT NULL,
	reason TEXT NOT NULL,
	action TEXT NOT NULL,
	client_ip TEXT NOT NULL,
	device_id TEXT NOT NULL,
	serial TEXT NOT NULL,
	cert_sha256 TEXT NOT NULL,
	external_id TEXT NOT NULL,
	build_id TEXT NOT NULL,
	app_id TEXT NOT NULL,
	doc TEXT NOT NULL
);
INSERT INTO events_v4 (seq, id, time_ns, received_ns, fusion_set, reason, action, client_ip, device_id, serial,
	cert_sha256, external_id, build_id, app_id, doc)
	SELECT seq, id, time_ns, received_ns, fusion_set, reason, action, client_ip, device_id, serial,
	cert_sha256, external_id, build_id, app_id, doc FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE INDEX events_time ON events (time_ns, id);
CREATE INDEX events_set_time ON events (fusion_set, time_ns, id);
CREATE INDEX events_reason_time ON events (reason, time_ns, id);
CREATE TABLE event_index (
	seq {{seqkey}},
	time_ns BIGINT NOT NULL,
	id TEXT NOT NULL,
	client_ip TEXT NOT NULL,
	device_id TEXT NOT NULL,
	serial TEXT NOT NULL,
	external_id TEXT NOT NULL
);
INSERT INTO event_index (seq, time_ns, id, client_ip, device_id, serial, external_id)
	SELECT seq, time_ns, id, client_ip, device_id, serial, external_id FROM events ORDER BY seq;
CREATE INDEX event_index_client ON event_index (client_ip, time_ns);
CREATE INDEX event_index_device ON event_index (device_id, time_ns);
CREATE INDEX event_index_serial ON event_index (serial, time_ns);
CREATE INDEX event_index_external ON event_index (external_id);
`

// schemaV5 records each gateway instance that delivers events (issue 14's
// gateways view): kind and node as its events name them, with the token
// that delivered them (a token cannot update another token's instance,
// only add its own beside it), the software of the last delivery (its
// User-Agent), when it was first and last heard from, its newest event
// and how many events it delivered.
const schemaV5 = `
CREATE TABLE gateway_instances (
	gateway TEXT NOT NULL,
	node TEXT NOT NULL,
	agent TEXT NOT NULL,
	token_name TEXT NOT NULL,
	first_seen_ns BIGINT NOT NULL,
	last_seen_ns BIGINT NOT NULL,
	last_event_ns BIGINT NOT NULL,
	last_event_id TEXT NOT NULL,
	events BIGINT NOT NULL,
	PRIMARY KEY (gateway, node, token_name)
);
CREATE INDEX gateway_instances_seen ON gateway_instances (last_seen_ns);
`

// migrationLock serializes migrations of several PostgreSQL instances
// starting at once (an advisory lock held for the transaction).
const migrationLock = 0x6d6363_01

// migrate applies every migration newer than the database's version.
func (db *DB) migrate(ctx context.Context) error {
	create := `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_ns BIGINT NOT NULL)`
	// PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a second
	// instance creating the table at the same moment (duplicate pg_type
	// key): take the migration lock for it too.
	err := db.Tx(ctx, func(tx *Tx) error {
		if tx.dialect == Postgres {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, create)
		return err
	})
	if err != nil {
		return fmt.Errorf("database: creating schema_migrations: %w", err)
	}
	current, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current > LatestVersion() {
		return fmt.Errorf("database: schema version %d is newer than this mcc knows (%d): run a newer mcc", current, LatestVersion())
	}
	for _, m := range migrations {
		if m.version <= current {
			continue
		}
		err := db.Tx(ctx, func(tx *Tx) error {
			if tx.dialect == Postgres {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
					return err
				}
			}
			// Another instance may have applied it while we waited.
			var done int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&done); err != nil {
				return err
			}
			if done > 0 {
				return nil
			}
			for _, stmt := range splitStatements(dialectSQL(db.dialect, m.sql)) {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_ns) VALUES (?, ?, ?)`,
				m.version, m.name, NS(nowUTC()))
			return err
		})
		if err != nil {
			return fmt.Errorf("database: migration %d (%s): %w", m.version, m.name, err)
		}
		db.log.Info("database migrated", zapVersion(m.version), zapName(m.name))
	}
	return nil
}

// SchemaVersion is the newest migration applied (0 for a new database).
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := db.write.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("database: reading schema version: %w", err)
	}
	return v, nil
}

func dialectSQL(d Dialect, s string) string {
	// seqkey is a 64-bit primary key; on SQLite it must be spelled
	// INTEGER to be the rowid (no second index).
	blob, seqkey := "BLOB", "INTEGER PRIMARY KEY"
	if d == Postgres {
		blob, seqkey = "BYTEA", "BIGINT PRIMARY KEY"
	}
	return strings.NewReplacer("{{blob}}", blob, "{{seqkey}}", seqkey).Replace(s)
}

// splitStatements splits a migration at semicolons (no migration has a
// semicolon inside a literal).
func splitStatements(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}
