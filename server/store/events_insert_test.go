package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

// eventsRows makes n distinct rows with a gateway-sized document.
func eventsRows(n, offset int) []Event {
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	doc := `{"x":"` + strings.Repeat("d", 900) + `"}`
	out := make([]Event, n)
	for i := range out {
		j := i + offset
		out[i] = Event{
			ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", j, j), Time: base.Add(time.Duration(j/2) * time.Second), Received: base,
			FusionSet: fmt.Sprintf("set-%d", j%3), Reason: []string{"CERT_REVOKED", "NO_CLIENT_CERT"}[j%2], Action: "blocked",
			ClientIP: fmt.Sprintf("10.0.%d.%d", j/256%256, j%5), DeviceID: fmt.Sprintf("dev-%d", j%7),
			Serial: fmt.Sprintf("%x", j%4), CertSHA256: strings.Repeat("ab", 32), ExternalID: fmt.Sprintf("req-%d", j),
			BuildID: "b", AppID: "a", Doc: doc,
		}
	}
	return out
}

// TestEventsStoreSQLite and TestEventsStorePostgres run the same checks
// on both databases: the filter expressions and row-value keyset are
// plain SQL that each must accept.
func TestEventsStoreSQLite(t *testing.T) {
	db, err := Open(context.Background(), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eventsStoreChecks(t, db)
}

func TestEventsStorePostgres(t *testing.T) {
	db, err := Open(context.Background(), Options{URL: pgtest.Shared(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eventsStoreChecks(t, db)
}

func eventsStoreChecks(t *testing.T, db *DB) {
	ctx := context.Background()
	rows := eventsRows(100, 0)
	n, err := db.InsertEvents(ctx, rows)
	if err != nil || n != 100 {
		t.Fatalf("insert: %d, %v", n, err)
	}
	// Re-sent and repeated ids are skipped and not counted.
	again := append(eventsRows(10, 95), eventsRows(1, 104)...)
	if n, err := db.InsertEvents(ctx, again); err != nil || n != 5 {
		t.Fatalf("insert with 5 stored ids and one repeated: %d new, %v; want 5", n, err)
	}
	all := append(rows, eventsRows(5, 100)...)
	for _, c := range []struct {
		name string
		q    EventQuery
		want func(e Event) bool
	}{
		{"all", EventQuery{}, func(Event) bool { return true }},
		{"set", EventQuery{FusionSet: "set-1"}, func(e Event) bool { return e.FusionSet == "set-1" }},
		{"device and reason", EventQuery{DeviceID: "dev-3", Reason: "NO_CLIENT_CERT"}, func(e Event) bool {
			return e.DeviceID == "dev-3" && e.Reason == "NO_CLIENT_CERT"
		}},
		{"range", EventQuery{From: all[20].Time, To: all[60].Time, ClientIP: "10.0.0.2"}, func(e Event) bool {
			return !e.Time.Before(all[20].Time) && e.Time.Before(all[60].Time) && e.ClientIP == "10.0.0.2"
		}},
		{"external", EventQuery{ExternalID: "req-7", Serial: "3"}, func(e Event) bool { return e.ExternalID == "req-7" }},
	} {
		var want []string
		for i := len(all) - 1; i >= 0; i-- { // newest first; equal times by id descending
			if c.want(all[i]) {
				want = append(want, all[i].ID)
			}
		}
		var got []string
		q := c.q
		q.Limit = 3
		for {
			page, next, err := db.ListEvents(ctx, q)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			for _, e := range page {
				got = append(got, e.ID)
			}
			if next == nil {
				break
			}
			q.After = next
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s:\n got %v\nwant %v", c.name, got, want)
		}
	}
	e, err := db.GetEvent(ctx, rows[5].ID)
	if err != nil || e.Doc != rows[5].Doc || !e.Time.Equal(rows[5].Time) || !e.Received.Equal(rows[5].Received) {
		t.Fatalf("get: %+v, %v", e.ID, err)
	}
	if _, err := db.GetEvent(ctx, "00000000-0000-4000-8000-ffffffffffff"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
}

func BenchmarkEventsInsert500(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.InsertEvents(ctx, eventsRows(500, i*500)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}
