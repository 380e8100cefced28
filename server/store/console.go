package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds the console's queries (issue 14): rollups for the
// overview, the live feed after a sequence number, top offenders,
// retention, and browser sessions.

// RollupQuery selects rollups: [From, To) in buckets of Bucket (a whole
// number of minutes), optionally one fusion set, reason or action.
type RollupQuery struct {
	From, To  time.Time
	Bucket    time.Duration
	FusionSet string
	Reason    string
	Action    string
}

// RollupRow is the count of one bucket, fusion set, reason and action.
type RollupRow struct {
	Bucket    int // index from From
	FusionSet string
	Reason    string
	Action    string
	Count     int64
}

// Rollups sums the per-minute rollups into q's buckets. It reads the
// rollups table only: its cost grows with minutes × (set, reason, action)
// combinations, never with the number of events.
func (db *DB) Rollups(ctx context.Context, q RollupQuery) ([]RollupRow, error) {
	if q.Bucket < time.Minute || q.Bucket%time.Minute != 0 || !q.To.After(q.From) {
		return nil, errors.New("rollups: the bucket must be whole minutes and the range not empty")
	}
	from := Minute(q.From)
	where := []string{"minute_ns >= ?", "minute_ns < ?"}
	args := []any{from, NS(q.To)}
	for _, f := range []struct{ col, v string }{{"fusion_set", q.FusionSet}, {"reason", q.Reason}, {"action", q.Action}} {
		if f.v != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.v)
		}
	}
	// The bucket expression is written with literals (integers computed
	// here, never input): PostgreSQL matches GROUP BY to the select list
	// by text, and two placeholders would be two different parameters.
	bucket := fmt.Sprintf("(minute_ns - %d) / %d", from, int64(q.Bucket))
	rows, err := db.Query(ctx, `SELECT `+bucket+`, fusion_set, reason, action, SUM(count)
		FROM event_rollups WHERE `+strings.Join(where, " AND ")+`
		GROUP BY `+bucket+`, fusion_set, reason, action`, args...)
	if err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	defer rows.Close()
	var out []RollupRow
	for rows.Next() {
		var r RollupRow
		var bucket int64
		if err := rows.Scan(&bucket, &r.FusionSet, &r.Reason, &r.Action, &r.Count); err != nil {
			return nil, fmt.Errorf("rollups: reading a row: %w", err)
		}
		r.Bucket = int(bucket)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	return out, nil
}

// FeedEvent is an event as the live feed sends it: its sequence number
// (the SSE id) and the columns a row of the feed shows.
type FeedEvent struct {
	Seq        int64
	ID         string
	Time       time.Time
	FusionSet  string
	Reason     string
	Action     string
	ClientIP   string
	DeviceID   string
	ExternalID string
	Doc        string
}

// LastEventSeq is the newest sequence number given (0 when none).
func (db *DB) LastEventSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT last FROM event_seq WHERE one = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("events: reading the sequence: %w", err)
	}
	return n, nil
}

// EventsAfter returns up to limit events numbered after seq, oldest
// first, filtered by q's fusion set, reason and action (other fields of q
// are ignored). Numbers are given in commit order, so a reader that
// continues from the last number it saw misses nothing.
func (db *DB) EventsAfter(ctx context.Context, seq int64, q EventQuery, limit int) ([]FeedEvent, error) {
	where := []string{"seq > ?"}
	args := []any{seq}
	for _, f := range []struct{ col, v string }{{"fusion_set", q.FusionSet}, {"reason", q.Reason}, {"action", q.Action}} {
		if f.v != "" {
			// Not indexable on purpose: seq drives the query.
			where = append(where, f.col+" || '' = ?")
			args = append(args, f.v)
		}
	}
	args = append(args, limit)
	rows, err := db.Query(ctx, `SELECT seq, id, time_ns, fusion_set, reason, action, client_ip, device_id, external_id, doc
		FROM events WHERE `+strings.Join(where, " AND ")+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("events: feed: %w", err)
	}
	defer rows.Close()
	var out []FeedEvent
	for rows.Next() {
		var e FeedEvent
		var ns int64
		if err := rows.Scan(&e.Seq, &e.ID, &ns, &e.FusionSet, &e.Reason, &e.Action, &e.ClientIP, &e.DeviceID, &e.ExternalID, &e.Doc); err != nil {
			return nil, fmt.Errorf("events: feed: reading a row: %w", err)
		}
		e.Time = Time(ns)
		out = append(out, e)
	}
	return out, rows.Err()
}

// OffenderKinds are the columns top offenders are grouped by.
var OffenderKinds = map[string]string{
	"address":     "client_ip",
	"device":      "device_id",
	"certificate": "serial",
	"build":       "build_id",
}

// Offender is one subject with its event count, highest score and last
// event in a range.
type Offender struct {
	Subject  string
	Count    int64
	MaxScore int64
	Last     time.Time
}

// TopOffenders groups the events of [from, to) by kind (a key of
// OffenderKinds), most events first. It reads raw events in the range.
func (db *DB) TopOffenders(ctx context.Context, kind string, q EventQuery, limit int) ([]Offender, error) {
	col, ok := OffenderKinds[kind]
	if !ok {
		return nil, fmt.Errorf("offenders: unknown kind %q", kind)
	}
	score := `COALESCE(CAST(json_extract(doc, '$.threatEventsScore') AS INTEGER), 0)`
	if db.dialect == Postgres {
		score = `COALESCE((doc::jsonb ->> 'threatEventsScore')::bigint, 0)`
	}
	where := []string{"time_ns >= ?", "time_ns < ?", col + " <> ''"}
	args := []any{NS(q.From), NS(q.To)}
	for _, f := range []struct{ col, v string }{{"fusion_set", q.FusionSet}, {"reason", q.Reason}, {"action", q.Action}} {
		if f.v != "" {
			where = append(where, f.col+" || '' = ?")
			args = append(args, f.v)
		}
	}
	args = append(args, limit)
	rows, err := db.Query(ctx, `SELECT `+col+`, COUNT(*), MAX(`+score+`), MAX(time_ns) FROM events
		WHERE `+strings.Join(where, " AND ")+` GROUP BY `+col+` ORDER BY COUNT(*) DESC, `+col+` LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("offenders: %w", err)
	}
	defer rows.Close()
	var out []Offender
	for rows.Next() {
		var o Offender
		var last int64
		if err := rows.Scan(&o.Subject, &o.Count, &o.MaxScore, &last); err != nil {
			return nil, fmt.Errorf("offenders: reading a row: %w", err)
		}
		o.Last = Time(last)
		out = append(out, o)
	}
	return out, rows.Err()
}

// purgeBatch bounds one DELETE, so retention never holds the single
// SQLite writer (or PostgreSQL locks) for long.
const purgeBatch = 5000

// PurgeEvents deletes raw events whose own time is before before, in
// batches, and returns how many. Their rollups stay.
func (db *DB) PurgeEvents(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		// The same rows from both tables: (time_ns, id) orders them fully.
		err := db.Tx(ctx, func(tx *Tx) error {
			const batch = `SELECT seq FROM events WHERE time_ns < ? ORDER BY time_ns, id LIMIT ?`
			if _, err := tx.Exec(ctx, `DELETE FROM event_index WHERE seq IN (`+batch+`)`, NS(before), purgeBatch); err != nil {
				return err
			}
			res, err := tx.Exec(ctx, `DELETE FROM events WHERE seq IN (`+batch+`)`, NS(before), purgeBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("events: purging: %w", err)
		}
		total += n
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
		if n < purgeBatch {
			break
		}
	}
	// Index rows whose event is gone another way: on PostgreSQL the
	// indexer can copy an event a concurrent purge is deleting, and an
	// instance of an older mcc purges events alone during an upgrade.
	if _, err := db.Exec(ctx, `DELETE FROM event_index WHERE time_ns < ?
		AND NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = event_index.seq)`, NS(before)); err != nil {
		return total, fmt.Errorf("events: purging stray index rows: %w", err)
	}
	return total, nil
}

// PurgeRollups deletes rollup minutes before before.
func (db *DB) PurgeRollups(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.Exec(ctx, `DELETE FROM event_rollups WHERE minute_ns < ?`, NS(before))
	if err != nil {
		return 0, fmt.Errorf("rollups: purging: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// SessionRow is a signed-in console browser. The session id itself is
// never stored, only its SHA-256 (IDHash): a copy of the database does not
// sign anyone in.
type SessionRow struct {
	IDHash    []byte
	TokenID   string
	TokenName string
	Scopes    string // as the token's, comma list
	Created   time.Time
	Expires   time.Time
}

// InsertSession stores a new session.
func (db *DB) InsertSession(ctx context.Context, s SessionRow) error {
	_, err := db.Exec(ctx, `INSERT INTO console_sessions (id_hash, token_id, token_name, scopes, created_ns, expires_ns) VALUES (?, ?, ?, ?, ?, ?)`,
		s.IDHash, s.TokenID, s.TokenName, s.Scopes, NS(s.Created), NS(s.Expires))
	if err != nil {
		return fmt.Errorf("sessions: inserting: %w", err)
	}
	return nil
}

// Session reads a session by the hash of its id (ErrNotFound wrapped when
// none). Expiry is the caller's to check.
func (db *DB) Session(ctx context.Context, idHash []byte) (SessionRow, error) {
	var s SessionRow
	var created, expires int64
	err := db.QueryRow(ctx, `SELECT id_hash, token_id, token_name, scopes, created_ns, expires_ns FROM console_sessions WHERE id_hash = ?`, idHash).
		Scan(&s.IDHash, &s.TokenID, &s.TokenName, &s.Scopes, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return SessionRow{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return SessionRow{}, fmt.Errorf("sessions: reading: %w", err)
	}
	s.Created, s.Expires = Time(created), Time(expires)
	return s, nil
}

// DeleteSession removes a session (sign-out).
func (db *DB) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := db.Exec(ctx, `DELETE FROM console_sessions WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("sessions: deleting: %w", err)
	}
	return nil
}

// PurgeSessions deletes sessions expired before t.
func (db *DB) PurgeSessions(ctx context.Context, t time.Time) (int64, error) {
	res, err := db.Exec(ctx, `DELETE FROM console_sessions WHERE expires_ns < ?`, NS(t))
	if err != nil {
		return 0, fmt.Errorf("sessions: purging: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
