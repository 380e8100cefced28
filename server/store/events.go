package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Event is one stored threat event: the columns that queries filter on,
// taken from the event when it was ingested, and the event's JSON as
// received (compact). Optional fields the event did not carry are "".
type Event struct {
	ID         string
	Time       time.Time // the event's own time (when the gateway saw the request)
	Received   time.Time // when the server stored it
	FusionSet  string
	Reason     string
	Action     string
	ClientIP   string
	DeviceID   string
	Serial     string
	CertSHA256 string
	ExternalID string
	BuildID    string
	AppID      string
	Doc        string
	// Gateway and Node name the gateway instance that saw the event
	// (its "gateway" and "node"): they key gateway_instances, not columns
	// of events.
	Gateway string
	Node    string
}

// insertEventSQL skips an event whose id is already stored: gateways
// deliver at least once, so a re-sent event is a duplicate, not an error.
// One prepared row per statement: measured against 64-row statements, it
// spends less CPU per event on SQLite.
const insertEventSQL = `INSERT INTO events (id, time_ns, received_ns, fusion_set, reason, action, client_ip,
	device_id, serial, cert_sha256, external_id, build_id, app_id, doc, seq)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`

// upsertRollupSQL adds a batch's count to its minute's row.
const upsertRollupSQL = `INSERT INTO event_rollups (minute_ns, fusion_set, reason, action, count) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (minute_ns, fusion_set, reason, action) DO UPDATE SET count = event_rollups.count + excluded.count`

// RollupKey is one row of the per-minute rollups.
type RollupKey struct {
	MinuteNS  int64
	FusionSet string
	Reason    string
	Action    string
}

// Minute is the start of the rollup minute that holds t.
func Minute(t time.Time) int64 {
	ns := NS(t)
	return ns - ns%int64(time.Minute)
}

// InsertEvents stores events in one transaction and returns how many were
// new; the others (ids already stored, or repeated within events) were
// duplicates and are left as they were. The new events are numbered
// (events.seq, the live feed's cursor) and counted in the per-minute
// rollups in the same transaction, so a duplicate is never counted twice
// and the rollups never disagree with the events they count.
func (db *DB) InsertEvents(ctx context.Context, events []Event) (inserted int, err error) {
	return db.InsertEventsFrom(ctx, events, Sender{})
}

// InsertEventsFrom is InsertEvents for a batch delivered by from: in the
// same transaction, each gateway instance the events name is recorded
// (RecordGateways).
func (db *DB) InsertEventsFrom(ctx context.Context, events []Event, from Sender) (inserted int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	err = db.Tx(ctx, func(tx *Tx) error {
		inserted = 0 // fn runs again when the transaction is retried
		// Reserving the numbers first takes the row lock that orders
		// concurrent batches (PostgreSQL): numbers become visible in the
		// order they were given. Duplicates leave gaps, which is fine for
		// a cursor.
		var last int64
		if err := tx.QueryRow(ctx, `UPDATE event_seq SET last = last + ? WHERE one = 1 RETURNING last`, len(events)).Scan(&last); err != nil {
			return fmt.Errorf("events: numbering: %w", err)
		}
		first := last - int64(len(events)) + 1
		stmt, err := tx.Prepare(ctx, insertEventSQL)
		if err != nil {
			return fmt.Errorf("events: preparing insert: %w", err)
		}
		defer stmt.Close()
		counts := map[RollupKey]int64{}
		seen := gatewaysSeen{}
		for i := range events {
			e := &events[i]
			res, err := stmt.ExecContext(ctx, e.ID, NS(e.Time), NS(e.Received), e.FusionSet, e.Reason, e.Action,
				e.ClientIP, e.DeviceID, e.Serial, e.CertSHA256, e.ExternalID, e.BuildID, e.AppID, e.Doc, first+int64(i))
			if err != nil {
				return fmt.Errorf("events: inserting event %d: %w", i, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("events: inserting event %d: %w", i, err)
			}
			if n > 0 {
				inserted += int(n)
				counts[RollupKey{Minute(e.Time), e.FusionSet, e.Reason, e.Action}]++
			}
			seen.add(e, n > 0)
		}
		if err := upsertRollups(ctx, tx, counts); err != nil {
			return err
		}
		return seen.record(ctx, tx, from, events[0].Received)
	})
	return inserted, err
}

// upsertRollups adds counts to the rollups, in key order so that two
// instances' transactions lock rows in the same order (no deadlock).
func upsertRollups(ctx context.Context, tx *Tx, counts map[RollupKey]int64) error {
	if len(counts) == 0 {
		return nil
	}
	keys := make([]RollupKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b RollupKey) int {
		return cmp.Or(cmp.Compare(a.MinuteNS, b.MinuteNS), strings.Compare(a.FusionSet, b.FusionSet),
			strings.Compare(a.Reason, b.Reason), strings.Compare(a.Action, b.Action))
	})
	stmt, err := tx.Prepare(ctx, upsertRollupSQL)
	if err != nil {
		return fmt.Errorf("events: preparing rollups: %w", err)
	}
	defer stmt.Close()
	for _, k := range keys {
		if _, err := stmt.ExecContext(ctx, k.MinuteNS, k.FusionSet, k.Reason, k.Action, counts[k]); err != nil {
			return fmt.Errorf("events: counting minute %d: %w", k.MinuteNS, err)
		}
	}
	return nil
}

// EventKey is a position in the newest-first order of events: (time, id)
// descending. Pages continue strictly after it.
type EventKey struct {
	TimeNS int64
	ID     string
}

// EventQuery selects events. Empty strings and zero times do not filter.
type EventQuery struct {
	FusionSet  string
	Reason     string
	ClientIP   string
	DeviceID   string
	Serial     string
	ExternalID string
	// BuildID and Action never drive the query: they have no index. An
	// index on build_id cost a fifth of the ingest rate (measured with
	// bench/server), and a build's events are in every install, so walking
	// the time index to them finds a page quickly.
	BuildID string
	Action  string
	From    time.Time // inclusive
	To      time.Time // exclusive
	After   *EventKey // continue after this position (nil = from the newest)
	Limit   int
}

// eventColumns are what a listing reads: the stored document is the event.
const eventColumns = `id, time_ns, received_ns, doc`

// eventFilters are the equality filters, most selective first. The first
// one present drives the query through its index (column, time_ns, id),
// which also yields the newest-first order without a sort; the others are
// written `col || ” = ?`, an expression no index matches, so the planner
// cannot pick the index of a broad filter (a fusion set holding every
// event) over a narrow one (a device) when it has no statistics to go by.
// An indexed column's index is on event_index, not on events (schema
// version 4): a query it drives also reads the events not indexed yet.
var eventFilters = []struct {
	column  string
	indexed bool // in event_index rather than on events
	value   func(q *EventQuery) string
}{
	{"external_id", true, func(q *EventQuery) string { return q.ExternalID }},
	{"device_id", true, func(q *EventQuery) string { return q.DeviceID }},
	{"serial", true, func(q *EventQuery) string { return q.Serial }},
	{"client_ip", true, func(q *EventQuery) string { return q.ClientIP }},
	{"reason", false, func(q *EventQuery) string { return q.Reason }},
	{"fusion_set", false, func(q *EventQuery) string { return q.FusionSet }},
}

// ListEvents returns up to q.Limit events matching q, newest first, and
// the key to continue from when there may be more (nil on the last page).
// Pagination is keyset on (time_ns, id), never OFFSET, so a page costs
// the same however deep it is.
func (db *DB) ListEvents(ctx context.Context, q EventQuery) ([]Event, *EventKey, error) {
	if q.Limit < 1 {
		return nil, nil, errors.New("events: a listing needs a limit")
	}
	sqlText, args := listEventsSQL(db.dialect, q)
	rows, err := db.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("events: listing: %w", err)
	}
	defer rows.Close()
	out := make([]Event, 0, q.Limit)
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("events: listing: %w", err)
	}
	if len(out) <= q.Limit {
		return out, nil, nil
	}
	out = out[:q.Limit]
	last := out[len(out)-1]
	return out, &EventKey{TimeNS: NS(last.Time), ID: last.ID}, nil
}

// listEventsSQL is the query ListEvents runs for q, with its arguments.
func listEventsSQL(d Dialect, q EventQuery) (string, []any) {
	// conds writes the conditions every row must meet on the table
	// aliased t (e: events, x: event_index); the time and keyset ones go
	// to the table whose index orders the rows. skip is the driving
	// column, already compared by the caller.
	conds := func(t, order, skip string) ([]string, []any) {
		var w []string
		var a []any
		for _, f := range eventFilters {
			if v := f.value(&q); v != "" && f.column != skip {
				w = append(w, t+"."+f.column+" || '' = ?")
				a = append(a, v)
			}
		}
		if q.BuildID != "" {
			w = append(w, t+".build_id || '' = ?")
			a = append(a, q.BuildID)
		}
		if q.Action != "" {
			w = append(w, t+".action || '' = ?")
			a = append(a, q.Action)
		}
		if !q.From.IsZero() {
			w = append(w, order+".time_ns >= ?")
			a = append(a, NS(q.From))
		}
		if !q.To.IsZero() {
			w = append(w, order+".time_ns < ?")
			a = append(a, NS(q.To))
		}
		if q.After != nil {
			w = append(w, "("+order+".time_ns, "+order+".id) < (?, ?)")
			a = append(a, q.After.TimeNS, q.After.ID)
		}
		return w, a
	}
	where := func(w []string) string {
		if len(w) == 0 {
			return ""
		}
		return ` WHERE ` + strings.Join(w, " AND ")
	}
	// One row more than asked says whether another page exists.
	limit := q.Limit + 1
	orderBy := func(t string) string { return ` ORDER BY ` + t + `.time_ns DESC, ` + t + `.id DESC LIMIT ?` }
	const cols = `e.id, e.time_ns, e.received_ns, e.doc`

	var driving, value string
	indexed := false
	for _, f := range eventFilters {
		if v := f.value(&q); v != "" {
			driving, value, indexed = f.column, v, f.indexed
			break
		}
	}
	if !indexed {
		w, a := conds("e", "e", driving)
		if driving != "" {
			w = append([]string{"e." + driving + " = ?"}, w...)
			a = append([]any{value}, a...)
		}
		return `SELECT ` + cols + ` FROM events e` + where(w) + orderBy("e"), append(a, limit)
	}
	// Indexed events: walk event_index's index on the driving column,
	// each row joined to its event by seq.
	w1, a1 := conds("e", "x", driving)
	w1 = append([]string{"x." + driving + " = ?"}, w1...)
	a1 = append([]any{value}, a1...)
	// The events not indexed yet (what arrived since the indexer's last
	// run) follow the last indexed seq. SQLite is told to read them by
	// seq, its rowid (NOT INDEXED keeps rowid lookups): left alone it
	// walks events_time for the order, which reaches a rare device's
	// newest events only after every stored one.
	w2, a2 := conds("e", "e", driving)
	// Bounded on both sides: PostgreSQL plans before it knows either
	// bound, and an open range `seq > x` it guesses to hold a third of the
	// table, which it then walks by time; a closed one it reads by key.
	w2 = append([]string{"e.seq > (SELECT COALESCE(MAX(seq), 0) FROM event_index)",
		"e.seq <= (SELECT last FROM event_seq WHERE one = 1)", "e." + driving + " || '' = ?"}, w2...)
	a2 = append([]any{value}, a2...)
	hint := ""
	if d == SQLite {
		hint = " NOT INDEXED"
	}
	sqlText := `SELECT id, time_ns, received_ns, doc FROM (SELECT ` + cols + ` FROM event_index x JOIN events e ON e.seq = x.seq` +
		where(w1) + orderBy("x") + `) AS indexed UNION ALL SELECT id, time_ns, received_ns, doc FROM (SELECT ` + cols +
		` FROM events e` + hint + where(w2) + orderBy("e") + `) AS pending ORDER BY time_ns DESC, id DESC LIMIT ?`
	args := append(append(append(a1, limit), a2...), limit, limit)
	return sqlText, args
}

// IndexPendingEvents adds up to limit events not indexed yet, in the order
// they were numbered, to event_index (schema version 4), and returns how
// many it added. One run is one transaction: the more events it takes,
// the more entries share each index page it writes. The server runs it
// every second. Several instances may run it at once on PostgreSQL: a
// seq another run has added is skipped.
func (db *DB) IndexPendingEvents(ctx context.Context, limit int) (int64, error) {
	res, err := db.Exec(ctx, `INSERT INTO event_index (seq, time_ns, id, client_ip, device_id, serial, external_id)
		SELECT seq, time_ns, id, client_ip, device_id, serial, external_id FROM events
		WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM event_index) ORDER BY seq LIMIT ?
		ON CONFLICT (seq) DO NOTHING`, limit)
	if err != nil {
		return 0, fmt.Errorf("events: indexing pending events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("events: indexing pending events: %w", err)
	}
	return n, nil
}

// PendingSpan is how far the numbering has gone past the last indexed
// event: the pending events and the numbers duplicates left unused. It
// costs two lookups, where PendingEvents counts.
func (db *DB) PendingSpan(ctx context.Context) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT COALESCE((SELECT MAX(seq) FROM events), 0) - COALESCE((SELECT MAX(seq) FROM event_index), 0)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("events: reading the indexer's position: %w", err)
	}
	return n, nil
}

// PendingEvents counts the events the indexer has not reached yet.
func (db *DB) PendingEvents(ctx context.Context) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM events WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM event_index)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("events: counting pending events: %w", err)
	}
	return n, nil
}

// GetEvent returns the event with id (ErrNotFound wrapped when none).
func (db *DB) GetEvent(ctx context.Context, id string) (Event, error) {
	e, err := scanEvent(db.QueryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	return e, err
}

// scanEvent reads the eventColumns of one row.
func scanEvent(row interface{ Scan(...any) error }) (Event, error) {
	var e Event
	var timeNS, receivedNS int64
	if err := row.Scan(&e.ID, &timeNS, &receivedNS, &e.Doc); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Event{}, err
		}
		return Event{}, fmt.Errorf("events: reading a row: %w", err)
	}
	e.Time, e.Received = Time(timeNS), Time(receivedNS)
	return e, nil
}
