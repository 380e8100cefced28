package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

func TestConsoleStoreSQLite(t *testing.T) {
	db, err := Open(context.Background(), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	consoleStoreChecks(t, db)
}

func TestConsoleStorePostgres(t *testing.T) {
	db, err := Open(context.Background(), Options{URL: pgtest.Shared(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	consoleStoreChecks(t, db)
}

// expectedRollups counts rows per (minute, set, reason, action) the
// direct way, to compare with what InsertEvents maintained.
func expectedRollups(rows []Event, from time.Time, bucket time.Duration) map[RollupRow]bool {
	counts := map[RollupRow]int64{}
	for _, e := range rows {
		k := RollupRow{Bucket: int(e.Time.Sub(from.Truncate(time.Minute)) / bucket), FusionSet: e.FusionSet, Reason: e.Reason, Action: e.Action}
		counts[k]++
	}
	out := map[RollupRow]bool{}
	for k, n := range counts {
		k.Count = n
		out[k] = true
	}
	return out
}

func consoleStoreChecks(t *testing.T, db *DB) {
	ctx := context.Background()
	rows := eventsRows(300, 0) // times span 150 s from 2026-12-01T00:00
	for i := range rows {
		if i%3 == 0 {
			rows[i].Action = "reported"
		}
	}
	if n, err := db.InsertEvents(ctx, rows[:200]); err != nil || n != 200 {
		t.Fatalf("insert: %d, %v", n, err)
	}
	// A batch that re-sends 100 stored events and 100 new ones: only the
	// new ones are counted.
	if n, err := db.InsertEvents(ctx, rows[100:]); err != nil || n != 100 {
		t.Fatalf("insert with duplicates: %d, %v", n, err)
	}
	from := rows[0].Time
	to := from.Add(time.Hour)
	for _, bucket := range []time.Duration{time.Minute, 2 * time.Minute} {
		got, err := db.Rollups(ctx, RollupQuery{From: from, To: to, Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		want := expectedRollups(rows, from, bucket)
		if len(got) != len(want) {
			t.Fatalf("bucket %v: %d rollup rows, want %d: %+v", bucket, len(got), len(want), got)
		}
		for _, r := range got {
			if !want[r] {
				t.Fatalf("bucket %v: rollup %+v not expected (want %v)", bucket, r, want)
			}
		}
	}
	// A filter counts only its set.
	got, err := db.Rollups(ctx, RollupQuery{From: from, To: to, Bucket: time.Hour, FusionSet: "set-1", Action: "blocked"})
	if err != nil {
		t.Fatal(err)
	}
	var sum, want int64
	for _, r := range got {
		sum += r.Count
	}
	for _, e := range rows {
		if e.FusionSet == "set-1" && e.Action == "blocked" {
			want++
		}
	}
	if sum != want || want == 0 {
		t.Fatalf("set-1 blocked: %d counted, want %d", sum, want)
	}

	// The feed returns every event once, in insertion order, in pages.
	var seen []FeedEvent
	var cursor int64
	for {
		page, err := db.EventsAfter(ctx, cursor, EventQuery{}, 64)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		seen = append(seen, page...)
		cursor = page[len(page)-1].Seq
	}
	if len(seen) != len(rows) {
		t.Fatalf("feed gave %d events, want %d", len(seen), len(rows))
	}
	for i, e := range seen {
		if e.ID != rows[i].ID || (i > 0 && e.Seq <= seen[i-1].Seq) {
			t.Fatalf("feed event %d is %s seq %d, want %s in rising order", i, e.ID, e.Seq, rows[i].ID)
		}
	}
	if last, err := db.LastEventSeq(ctx); err != nil || last < cursor {
		t.Fatalf("last seq %d (%v), feed reached %d", last, err, cursor)
	}
	filtered, err := db.EventsAfter(ctx, 0, EventQuery{Reason: "NO_CLIENT_CERT", Action: "reported"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range filtered {
		if e.Reason != "NO_CLIENT_CERT" || e.Action != "reported" {
			t.Fatalf("filtered feed gave %+v", e)
		}
	}
	if len(filtered) == 0 {
		t.Fatal("filtered feed is empty")
	}

	// Offenders: counts per device agree with the rows.
	offenders, err := db.TopOffenders(ctx, "device", EventQuery{From: from, To: to}, 3)
	if err != nil {
		t.Fatal(err)
	}
	perDevice := map[string]int64{}
	for _, e := range rows {
		perDevice[e.DeviceID]++
	}
	if len(offenders) != 3 {
		t.Fatalf("%d offenders, want 3", len(offenders))
	}
	for i, o := range offenders {
		if o.Count != perDevice[o.Subject] || (i > 0 && o.Count > offenders[i-1].Count) {
			t.Fatalf("offender %d: %+v, want count %d, most first", i, o, perDevice[o.Subject])
		}
	}
	if _, err := db.TopOffenders(ctx, "doc; DROP TABLE events", EventQuery{From: from, To: to}, 3); err == nil {
		t.Fatal("an unknown offender kind was accepted")
	}

	// Retention: raw events before the cut go, with their index rows, and
	// so does an index row whose event went another way; the rollups stay.
	for {
		if moved, err := db.IndexPendingEvents(ctx, 1000); err != nil || moved == 0 {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO event_index (seq, time_ns, id, client_ip, device_id, serial, external_id)
		VALUES (999999, ?, 'stray', '', '', '', '')`, NS(rows[0].Time)); err != nil {
		t.Fatal(err)
	}
	cut := rows[0].Time.Add(60 * time.Second)
	n, err := db.PurgeEvents(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	var before int64
	for _, e := range rows {
		if e.Time.Before(cut) {
			before++
		}
	}
	if n != before || n == 0 {
		t.Fatalf("purged %d events, want %d", n, before)
	}
	left, _, err := db.ListEvents(ctx, EventQuery{Limit: 1000})
	if err != nil || int64(len(left)) != int64(len(rows))-before {
		t.Fatalf("%d events left (%v), want %d", len(left), err, int64(len(rows))-before)
	}
	var indexRows, stray int64
	if err := db.QueryRow(ctx, `SELECT COUNT(*), COUNT(CASE WHEN NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = event_index.seq) THEN 1 END) FROM event_index`).Scan(&indexRows, &stray); err != nil {
		t.Fatal(err)
	}
	if indexRows != int64(len(left)) || stray != 0 {
		t.Fatalf("%d index rows (%d without their event) for %d events left", indexRows, stray, len(left))
	}
	got, err = db.Rollups(ctx, RollupQuery{From: from, To: to, Bucket: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sum = 0
	for _, r := range got {
		sum += r.Count
	}
	if sum != int64(len(rows)) {
		t.Fatalf("rollups after purge count %d, want %d (kept)", sum, len(rows))
	}
	if n, err := db.PurgeRollups(ctx, to); err != nil || n == 0 {
		t.Fatalf("purging rollups: %d, %v", n, err)
	}
}

// TestFeedOrderConcurrentPostgres has two connections pools insert
// batches at once while a reader follows the feed: the reader must see
// every event (a number given by a transaction that commits later than a
// higher one would be skipped by a cursor).
func TestFeedOrderConcurrentPostgres(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := context.Background()
	var dbs []*DB
	for i := 0; i < 3; i++ {
		db, err := Open(ctx, Options{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}
	const writers, batches, size = 2, 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				if _, err := dbs[w].InsertEvents(ctx, eventsRows(size, (w*batches+b)*size)); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[string]bool{}
	var cursor int64
	finished := false
	for {
		page, err := dbs[2].EventsAfter(ctx, cursor, EventQuery{}, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("event %s seen twice", e.ID)
			}
			seen[e.ID] = true
			cursor = e.Seq
		}
		if len(page) == 0 && finished {
			break
		}
		select {
		case <-done:
			finished = true
		default:
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != writers*batches*size {
		t.Fatalf("the reader saw %d events, want %d", len(seen), writers*batches*size)
	}
}
