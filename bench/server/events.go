package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

func init() {
	register(benchmark{name: "ingest", what: "threat events/s stored through POST /v1/events in batches of 500 (budget >= 20,000/s on SQLite)", run: benchIngest})
	register(benchmark{name: "query", what: "GET /v1/events p50/p99 of filtered pages with 1,000,000 events stored (budget p99 < 50 ms)", run: benchQuery})
}

// eventsBatchSize is what a busy gateway's webhook sink would send.
const eventsBatchSize = 500

// eventsSynthetic makes event number i of a large, varied population:
// 10 fusion sets, every reason code, 50,000 client addresses, 100,000
// devices, 1,000 certificates, a unique request id; its time is at.
func eventsSynthetic(i int, at time.Time) *threat.Event {
	reason := threat.AllReasons[i%len(threat.AllReasons)]
	// Devices and addresses in no order (a multiplicative hash of i), as
	// traffic brings them: their index entries land on random pages.
	scatter := int(uint32(i) * 2654435761)
	serial := fmt.Sprintf("%x", 0x10000+i%1000)
	return &threat.Event{
		Schema: threat.SchemaID, ID: threat.NewEventID(), Name: threat.FeatureName,
		Time:       at,
		ReasonCode: reason, ReasonData: map[string]any{"detail": "synthetic"},
		CurrentThreatEventScore: threat.DefaultScores[reason], ThreatEventsScore: threat.DefaultScores[reason],
		Message:       "This app build is not allowed.",
		ExternalID:    fmt.Sprintf("req-%08x", uint32(i)*2654435761),
		FusedAppToken: fmt.Sprintf("build-%d", i%1000),
		Device:        map[string]string{"deviceID": fmt.Sprintf("device-%06d", scatter%100_000), "osVersion": "17.4", "devicePlatform": "ios"},
		FusionSet:     fmt.Sprintf("set-%d", i%10),
		Mode:          threat.ModeDefense, Action: threat.ActionBlocked, Gateway: threat.GatewayCaddy, Node: "node-1",
		ClientIP: fmt.Sprintf("10.%d.%d.%d", scatter%50_000/65536, scatter%50_000/256%256, scatter%256),
		SNI:      "api.example.com", Host: "api.example.com", Method: "GET", Path: "/accounts",
		Certificate: &threat.CertInfo{
			Serial: serial, SHA256: strings.Repeat("ab", 32), Subject: "CN=app", Issuer: "CN=mcc set CA",
			NotBefore: at.Add(-24 * time.Hour), NotAfter: at.Add(364 * 24 * time.Hour), AppID: "app", BuildID: fmt.Sprintf("build-%d", i%1000),
		},
	}
}

// benchIngest posts batches from several clients at once, as many
// gateways do, and reports events stored per second.
func benchIngest(ctx context.Context, o options) error {
	total := 200_000
	if o.Quick {
		total = 5_000
	}
	c, err := startCertsServer(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	// Encode every batch first: the figure is the server's, not the
	// client's JSON encoder (both share the machine's cores).
	start := time.Now().UTC()
	var bodies [][]byte
	for i := 0; i < total; i += eventsBatchSize {
		parts := make([]string, 0, eventsBatchSize)
		for j := i; j < min(i+eventsBatchSize, total); j++ {
			// Times as live traffic brings them, 20,000 a second: the
			// per-minute rollups get a few rows per batch, not one per
			// event as a month's spread would give them.
			b, err := json.Marshal(eventsSynthetic(j, start.Add(time.Duration(j)*50*time.Microsecond)))
			if err != nil {
				return err
			}
			parts = append(parts, string(b))
		}
		bodies = append(bodies, []byte(`{"events":[`+strings.Join(parts, ",")+`]}`))
	}
	const clients = 4
	work := make(chan []byte)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				status, resp, err := c.call(ctx, "POST", "/v1/events", c.admin, "application/json", body)
				if err == nil && status != 200 {
					err = fmt.Errorf("ingest answered %d: %.200s", status, resp)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, b := range bodies {
		select {
		case work <- b:
		case err := <-errs:
			close(work)
			wg.Wait()
			return err
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(t0)
	select {
	case err := <-errs:
		return err
	default:
	}
	// Stored is when the last batch was answered: every event is
	// queryable then. Indexed is when the server's indexer (running all
	// along, as under `mcc server`) had also put the last of them into
	// the device, address and request id indexes: the rate it sustains.
	if err := waitIndexed(ctx, c.srv.DB()); err != nil {
		return err
	}
	indexed := time.Since(t0)
	fmt.Printf("%s: %d events in %d batches of %d, %d clients, %d CPUs: stored %.0f events/s (%s), indexed %.0f events/s (%s)\n",
		certsDialect(o), total, len(bodies), eventsBatchSize, clients, runtime.NumCPU(),
		float64(total)/elapsed.Seconds(), elapsed.Round(time.Millisecond),
		float64(total)/indexed.Seconds(), indexed.Round(time.Millisecond))
	return nil
}

// waitIndexed returns once the server's indexer has no event pending.
func waitIndexed(ctx context.Context, db *store.DB) error {
	for {
		pending, err := db.PendingEvents(ctx)
		if err != nil || pending == 0 {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchQuery stores a million events directly (the ingest benchmark
// measures the API path), then times filtered first pages and second
// pages through the API.
func benchQuery(ctx context.Context, o options) error {
	total := 1_000_000
	if o.Quick {
		total = 20_000
	}
	c, err := startCertsServer(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	db := c.srv.DB()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Now()
	const perTx = 10_000
	rows := make([]store.Event, 0, perTx)
	for i := 0; i < total; i++ {
		ev := eventsSynthetic(i, start.Add(time.Duration(i)*(30*24*time.Hour/1_000_000)))
		doc, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		rows = append(rows, store.Event{
			ID: ev.ID, Time: ev.Time, Received: ev.Time, FusionSet: ev.FusionSet, Reason: string(ev.ReasonCode),
			Action: string(ev.Action), ClientIP: ev.ClientIP, DeviceID: ev.Device["deviceID"], Serial: ev.Certificate.Serial,
			CertSHA256: ev.Certificate.SHA256, ExternalID: ev.ExternalID, BuildID: ev.FusedAppToken, AppID: ev.Certificate.AppID,
			Doc: string(doc),
		})
		if len(rows) == perTx || i == total-1 {
			if _, err := db.InsertEvents(ctx, rows); err != nil {
				return err
			}
			rows = rows[:0]
		}
	}
	filled := time.Since(t0)
	if err := waitIndexed(ctx, db); err != nil {
		return err
	}
	fmt.Printf("%s: filled %d events in %s (direct store inserts, %d per transaction), indexed %s after\n",
		certsDialect(o), total, filled.Round(time.Millisecond), perTx, (time.Since(t0) - filled).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(1, 2))
	day := func() (string, string) {
		from := start.Add(time.Duration(rng.IntN(29*24)) * time.Hour)
		return from.Format(time.RFC3339), from.Add(24 * time.Hour).Format(time.RFC3339)
	}
	queries := []struct {
		name string
		make func() string
	}{
		{"fusionSet", func() string { return "fusionSet=set-" + fmt.Sprint(rng.IntN(10)) }},
		{"reason+day", func() string {
			from, to := day()
			return "reason=" + string(threat.AllReasons[rng.IntN(len(threat.AllReasons))]) + "&from=" + url.QueryEscape(from) + "&to=" + url.QueryEscape(to)
		}},
		{"clientIP", func() string {
			i := rng.IntN(50_000)
			return fmt.Sprintf("clientIP=10.%d.%d.%d", i/65536, i/256%256, i%256)
		}},
		{"externalId", func() string { return fmt.Sprintf("externalId=req-%08d", rng.IntN(total)) }},
		{"deviceId+set", func() string {
			d := rng.IntN(100_000)
			return fmt.Sprintf("deviceId=device-%06d&fusionSet=set-%d", d, d%10)
		}},
	}
	const perQuery = 200
	for _, q := range queries {
		var first, second []time.Duration
		for n := 0; n < perQuery; n++ {
			path := "/v1/events?limit=50&" + q.make()
			t := time.Now()
			status, body, err := c.call(ctx, "GET", path, c.admin, "", nil)
			first = append(first, time.Since(t))
			if err == nil && status != 200 {
				err = fmt.Errorf("%s answered %d: %.200s", path, status, body)
			}
			if err != nil {
				return err
			}
			var p struct {
				NextCursor string `json:"nextCursor"`
			}
			if err := json.Unmarshal(body, &p); err != nil {
				return err
			}
			if p.NextCursor == "" {
				continue
			}
			t = time.Now()
			status, body, err = c.call(ctx, "GET", path+"&cursor="+p.NextCursor, c.admin, "", nil)
			second = append(second, time.Since(t))
			if err == nil && status != 200 {
				err = fmt.Errorf("%s (page 2) answered %d: %.200s", path, status, body)
			}
			if err != nil {
				return err
			}
		}
		certsLatency(q.name, first)
		if len(second) > 0 {
			certsLatency(q.name+" page 2", second)
		}
	}
	return nil
}
