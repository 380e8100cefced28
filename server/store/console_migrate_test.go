package store

import (
	"context"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

// TestMigration3BackfillSQLite and ...Postgres open a database at schema
// 2 holding events, then migrate it: the events are numbered in the
// order they were received, counted in the rollups, moved into
// event_index (migration 4), and new events are numbered after them.
func TestMigration3BackfillSQLite(t *testing.T) {
	dir := t.TempDir()
	migration3Backfill(t, func() (*DB, error) { return Open(context.Background(), Options{DataDir: dir}) })
}

func TestMigration3BackfillPostgres(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	migration3Backfill(t, func() (*DB, error) { return Open(context.Background(), Options{URL: url}) })
}

func migration3Backfill(t *testing.T, open func() (*DB, error)) {
	ctx := context.Background()
	all := migrations
	migrations = all[:2]
	db, err := open()
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	rows := eventsRows(30, 0)
	for i, e := range rows {
		// Received in reverse id order: the numbering must follow receipt.
		received := NS(e.Received.Add(time.Duration(len(rows)-i) * time.Second))
		if _, err := db.Exec(ctx, `INSERT INTO events (id, time_ns, received_ns, fusion_set, reason, action, client_ip,
			device_id, serial, cert_sha256, external_id, build_id, app_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, NS(e.Time), received, e.FusionSet, e.Reason, e.Action, e.ClientIP, e.DeviceID, e.Serial, e.CertSHA256,
			e.ExternalID, e.BuildID, e.AppID, e.Doc); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	db, err = open()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(ctx); err != nil || v != LatestVersion() {
		t.Fatalf("schema version %d, %v", v, err)
	}
	// Migration 4 moved the events into event_index: none is pending, and
	// a device's events are found through it.
	if n, err := db.PendingEvents(ctx); err != nil || n != 0 {
		t.Fatalf("%d events pending after migration (%v)", n, err)
	}
	byDevice, _, err := db.ListEvents(ctx, EventQuery{DeviceID: rows[0].DeviceID, Limit: 100})
	wantDevice := 0
	for _, e := range rows {
		if e.DeviceID == rows[0].DeviceID {
			wantDevice++
		}
	}
	if err != nil || len(byDevice) != wantDevice {
		t.Fatalf("device %s after migration: %d events (%v), want %d", rows[0].DeviceID, len(byDevice), err, wantDevice)
	}
	feed, err := db.EventsAfter(ctx, 0, EventQuery{}, 100)
	if err != nil || len(feed) != len(rows) {
		t.Fatalf("feed after migration: %d events, %v", len(feed), err)
	}
	for i, e := range feed {
		if want := rows[len(rows)-1-i].ID; e.ID != want || e.Seq != int64(i+1) {
			t.Fatalf("event %d: %s seq %d, want %s seq %d (receipt order)", i, e.ID, e.Seq, want, i+1)
		}
	}
	got, err := db.Rollups(ctx, RollupQuery{From: rows[0].Time, To: rows[0].Time.Add(time.Hour), Bucket: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := expectedRollups(rows, rows[0].Time, time.Minute)
	if len(got) != len(want) {
		t.Fatalf("%d rollup rows after migration, want %d", len(got), len(want))
	}
	for _, r := range got {
		if !want[r] {
			t.Fatalf("rollup %+v not expected", r)
		}
	}
	if n, err := db.InsertEvents(ctx, eventsRows(1, 100)); err != nil || n != 1 {
		t.Fatalf("insert after migration: %d, %v", n, err)
	}
	next, err := db.EventsAfter(ctx, int64(len(rows)), EventQuery{}, 10)
	if err != nil || len(next) != 1 || next[0].Seq != int64(len(rows))+1 {
		t.Fatalf("the next event is numbered %+v (%v), want %d", next, err, len(rows)+1)
	}
}

// TestMigration4NumbersStrayEventsSQLite and ...Postgres: an event stored
// without a number at schema 3 (an older mcc writing during an upgrade) is
// numbered after the others by migration 4, which then succeeds.
func TestMigration4NumbersStrayEventsSQLite(t *testing.T) {
	dir := t.TempDir()
	migration4Stray(t, func() (*DB, error) { return Open(context.Background(), Options{DataDir: dir}) })
}

func TestMigration4NumbersStrayEventsPostgres(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	migration4Stray(t, func() (*DB, error) { return Open(context.Background(), Options{URL: url}) })
}

func migration4Stray(t *testing.T, open func() (*DB, error)) {
	ctx := context.Background()
	all := migrations
	migrations = all[:3]
	db, err := open()
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	rows := eventsRows(3, 0)
	if _, err := db.InsertEvents(ctx, rows[:2]); err != nil {
		t.Fatal(err)
	}
	e := rows[2]
	if _, err := db.Exec(ctx, `INSERT INTO events (id, time_ns, received_ns, fusion_set, reason, action, client_ip,
		device_id, serial, cert_sha256, external_id, build_id, app_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, NS(e.Time), NS(e.Received), e.FusionSet, e.Reason, e.Action, e.ClientIP, e.DeviceID, e.Serial, e.CertSHA256,
		e.ExternalID, e.BuildID, e.AppID, e.Doc); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = open(); err != nil {
		t.Fatalf("migrating a database with an unnumbered event: %v", err)
	}
	defer db.Close()
	feed, err := db.EventsAfter(ctx, 0, EventQuery{}, 10)
	if err != nil || len(feed) != 3 || feed[2].ID != e.ID || feed[2].Seq != 3 {
		t.Fatalf("after migration: %+v (%v), want the unnumbered event third, numbered 3", feed, err)
	}
	if n, err := db.InsertEvents(ctx, eventsRows(1, 50)); err != nil || n != 1 {
		t.Fatalf("insert after migration: %d, %v", n, err)
	}
	if next, err := db.EventsAfter(ctx, 3, EventQuery{}, 10); err != nil || len(next) != 1 || next[0].Seq != 4 {
		t.Fatalf("the next event: %+v (%v), want number 4", next, err)
	}
}
