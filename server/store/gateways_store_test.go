package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
)

func TestGatewayInstancesSQLite(t *testing.T) {
	db, err := Open(context.Background(), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gatewayInstanceChecks(t, db)
}

func TestGatewayInstancesPostgres(t *testing.T) {
	db, err := Open(context.Background(), Options{URL: pgtest.Shared(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gatewayInstanceChecks(t, db)
}

// gatewayInstanceChecks: an instance counts its new events only, its
// newest event never moves back (a late batch of old events), the last
// delivery's agent and token replace the earlier ones, the table stops
// growing at MaxGatewayInstances while known instances keep updating,
// and instances not heard from are purged.
func gatewayInstanceChecks(t *testing.T, db *DB) {
	ctx := context.Background()
	rows := eventsRows(6, 0)
	for i := range rows {
		rows[i].Gateway, rows[i].Node = "caddy", "edge-1"
	}
	rows[5].Gateway, rows[5].Node = "envoy", "authz-1"
	if _, err := db.InsertEventsFrom(ctx, rows[:3], Sender{Agent: "mcc-webhook/1 mcc/v1", Token: "gw-a"}); err != nil {
		t.Fatal(err)
	}
	// The newest of the first batch is rows[2]; rows[0] again is a
	// duplicate; rows[3] and rows[4] are newer; rows[5] is another gateway.
	late := []Event{rows[0], rows[4], rows[3], rows[5]}
	for i := range late {
		late[i].Received = rows[0].Received.Add(time.Minute)
	}
	if _, err := db.InsertEventsFrom(ctx, late, Sender{Agent: "mcc-webhook/1 mcc/v2", Token: "gw-b"}); err != nil {
		t.Fatal(err)
	}
	// A batch of old events only: counted, but the newest stays.
	old := eventsRows(1, 100)
	old[0].Time, old[0].Gateway, old[0].Node = rows[0].Time.Add(-time.Hour), "caddy", "edge-1"
	if _, err := db.InsertEventsFrom(ctx, old, Sender{Agent: "mcc-webhook/1 mcc/v2", Token: "gw-b"}); err != nil {
		t.Fatal(err)
	}
	list, err := db.GatewayInstances(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]GatewayInstance{}
	for _, g := range list {
		got[g.Gateway+"/"+g.Node] = g
	}
	edge := got["caddy/edge-1"]
	newest := rows[4]
	if rows[3].Time.After(newest.Time) || (rows[3].Time.Equal(newest.Time) && rows[3].ID > newest.ID) {
		newest = rows[3]
	}
	if edge.Events != 6 || edge.Agent != "mcc-webhook/1 mcc/v2" || edge.TokenName != "gw-b" || edge.LastEventID != newest.ID ||
		!edge.LastEvent.Equal(newest.Time) || !edge.FirstSeen.Equal(rows[0].Received) {
		t.Errorf("caddy/edge-1 = %+v, want 6 events, agent v2, token gw-b, newest %s at %s", edge, newest.ID, newest.Time)
	}
	if a := got["envoy/authz-1"]; a.Events != 1 || a.LastEventID != rows[5].ID {
		t.Errorf("envoy/authz-1 = %+v", a)
	}

	// Past the bound, new instances are not recorded; known ones update.
	var many []Event
	for i, e := range eventsRows(MaxGatewayInstances+5, 1000) {
		e.Gateway, e.Node = "caddy", fmt.Sprintf("n-%05d", i)
		many = append(many, e)
	}
	extra := eventsRows(1, 5000)[0]
	extra.Gateway, extra.Node = "caddy", "edge-1"
	many = append(many, extra)
	for i := range many {
		many[i].Received = rows[0].Received.Add(2 * time.Minute)
	}
	if _, err := db.InsertEventsFrom(ctx, many, Sender{Agent: "x", Token: "gw-c"}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_instances`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != MaxGatewayInstances {
		t.Errorf("%d instances recorded, want the bound %d", n, MaxGatewayInstances)
	}
	list, _ = db.GatewayInstances(ctx, MaxGatewayInstances)
	for _, g := range list {
		if g.Node == "edge-1" && g.Events != 7 {
			t.Errorf("a known instance past the bound: %d events, want 7", g.Events)
		}
	}

	// Purge: instances last heard from before the cut go.
	if _, err := db.PurgeGateways(ctx, rows[0].Received.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_instances`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != MaxGatewayInstances {
		t.Errorf("%d instances after purging none heard from before the cut, want %d", n, MaxGatewayInstances)
	}
	if _, err := db.PurgeGateways(ctx, rows[0].Received.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_instances`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d instances after purging all (%v)", n, err)
	}
}
