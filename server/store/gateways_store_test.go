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
// newest event never moves back (a late batch of old events), another
// token naming the same node gets its own row, and the table grows by at
// most maxNewInstancesPerBatch a batch, MaxGatewayInstancesPerToken a token
// and MaxGatewayInstances in all, while known instances keep updating;
// instances not heard from are purged.
func gatewayInstanceChecks(t *testing.T, db *DB) {
	ctx := context.Background()
	rows := eventsRows(6, 0)
	for i := range rows {
		rows[i].Gateway, rows[i].Node = "caddy", "edge-1"
	}
	rows[5].Gateway, rows[5].Node = "envoy", "authz-1"
	a := Sender{Agent: "mcc-webhook/1 mcc/v1", Token: "gw-a"}
	if _, err := db.InsertEventsFrom(ctx, rows[:3], a); err != nil {
		t.Fatal(err)
	}
	// rows[0] again is a duplicate; rows[3] and rows[4] are newer than
	// the first batch; rows[5] is another gateway.
	late := []Event{rows[0], rows[4], rows[3], rows[5]}
	for i := range late {
		late[i].Received = rows[0].Received.Add(time.Minute)
	}
	a.Agent = "mcc-webhook/1 mcc/v2"
	if _, err := db.InsertEventsFrom(ctx, late, a); err != nil {
		t.Fatal(err)
	}
	// A batch of old events only: counted, but the newest stays.
	old := eventsRows(1, 100)
	old[0].Time, old[0].Gateway, old[0].Node = rows[0].Time.Add(-time.Hour), "caddy", "edge-1"
	if _, err := db.InsertEventsFrom(ctx, old, a); err != nil {
		t.Fatal(err)
	}
	// Another token naming the same node: its own row.
	other := eventsRows(1, 200)
	other[0].Gateway, other[0].Node = "caddy", "edge-1"
	if _, err := db.InsertEventsFrom(ctx, other, Sender{Agent: "spoof/9", Token: "gw-b"}); err != nil {
		t.Fatal(err)
	}
	got := instances(t, db)
	edge := got["caddy/edge-1/gw-a"]
	newest := rows[4]
	if rows[3].Time.After(newest.Time) || (rows[3].Time.Equal(newest.Time) && rows[3].ID > newest.ID) {
		newest = rows[3]
	}
	if edge.Events != 6 || edge.Agent != "mcc-webhook/1 mcc/v2" || edge.LastEventID != newest.ID ||
		!edge.LastEvent.Equal(newest.Time) || !edge.FirstSeen.Equal(rows[0].Received) {
		t.Errorf("caddy/edge-1 of gw-a = %+v, want 6 events, agent v2, newest %s at %s", edge, newest.ID, newest.Time)
	}
	if b := got["caddy/edge-1/gw-b"]; b.Events != 1 || b.Agent != "spoof/9" {
		t.Errorf("caddy/edge-1 of gw-b = %+v", b)
	}
	if e := got["envoy/authz-1/gw-a"]; e.Events != 1 || e.LastEventID != rows[5].ID {
		t.Errorf("envoy/authz-1 = %+v", e)
	}

	// Bounds: a batch adds at most maxNewInstancesPerBatch, a token at most
	// MaxGatewayInstancesPerToken, the table at most MaxGatewayInstances.
	seq := 1000
	batch := func(token string, nodes int) {
		t.Helper()
		var evs []Event
		for i, e := range eventsRows(nodes, seq) {
			e.Gateway, e.Node = "caddy", fmt.Sprintf("%s-n-%05d", token, seq+i)
			e.Received = rows[0].Received.Add(2 * time.Minute)
			evs = append(evs, e)
		}
		seq += nodes
		if _, err := db.InsertEventsFrom(ctx, evs, Sender{Agent: "x", Token: token}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		t.Helper()
		n, err := db.GatewayInstanceCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	batch("gw-c", 50)
	if n := count() - before; n != maxNewInstancesPerBatch {
		t.Errorf("a batch naming 50 new nodes added %d instances, want %d", n, maxNewInstancesPerBatch)
	}
	for i := 0; i < MaxGatewayInstancesPerToken; i++ {
		batch("gw-c", maxNewInstancesPerBatch)
	}
	if n := count() - before; n != MaxGatewayInstancesPerToken {
		t.Errorf("one token added %d instances, want the bound %d", n, MaxGatewayInstancesPerToken)
	}
	for tok := 0; count() < MaxGatewayInstances; tok++ {
		if tok > MaxGatewayInstances {
			t.Fatal("the table does not fill")
		}
		for i := 0; i < MaxGatewayInstancesPerToken/maxNewInstancesPerBatch+1; i++ {
			batch(fmt.Sprintf("gw-fill-%d", tok), maxNewInstancesPerBatch)
		}
	}
	batch("gw-late", 3)
	if n := count(); n != MaxGatewayInstances {
		t.Errorf("%d instances, want the bound %d", n, MaxGatewayInstances)
	}
	// A known instance still updates when the table is full.
	again := eventsRows(1, 90_000)
	again[0].Gateway, again[0].Node, again[0].Received = "caddy", "edge-1", rows[0].Received.Add(3*time.Minute)
	if _, err := db.InsertEventsFrom(ctx, again, a); err != nil {
		t.Fatal(err)
	}
	if e := instances(t, db)["caddy/edge-1/gw-a"]; e.Events != 7 {
		t.Errorf("a known instance in a full table: %d events, want 7", e.Events)
	}

	// Purge: instances last heard from before the cut go.
	if _, err := db.PurgeGateways(ctx, rows[0].Received.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != MaxGatewayInstances-2 {
		t.Errorf("%d instances after purging the two last heard from before the cut, want %d", n, MaxGatewayInstances-2)
	}
	if _, err := db.PurgeGateways(ctx, rows[0].Received.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Errorf("%d instances after purging all", n)
	}
}

// instances maps gateway/node/token to the recorded instance.
func instances(t *testing.T, db *DB) map[string]GatewayInstance {
	t.Helper()
	list, err := db.GatewayInstances(context.Background(), MaxGatewayInstances)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]GatewayInstance{}
	for _, g := range list {
		out[g.Gateway+"/"+g.Node+"/"+g.TokenName] = g
	}
	return out
}
