package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/pgtest"
	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestViewsSQLite(t *testing.T) { viewChecks(t, startEnv(t, "")) }

func TestViewsPostgres(t *testing.T) {
	viewChecks(t, startEnv(t, pgtest.Shared(t).NewDatabase(t)))
}

// viewChecks feeds events through the real webhook sink and reads them
// back through each view: the overview's totals match what was sent,
// each legend row links to its events, offenders count per subject, the
// externalID search finds its event, the export holds the filter's
// events.
func viewChecks(t *testing.T, e *env) {
	evs := sampleEvents(e.clock.Now(), 40)
	e.deliver(t, evs)
	e.deliver(t, evs[:10]) // re-sent: counted once
	b := e.browser(t)
	b.signIn(e.read)

	perReason := map[string]int{}
	perSet := map[string]int{}
	perAddr := map[string]int{}
	reported := 0
	for _, ev := range evs {
		perReason[string(ev.ReasonCode)]++
		perSet[ev.FusionSet]++
		perAddr[ev.ClientIP]++
		if ev.Action == threat.ActionReported {
			reported++
		}
	}
	resp, body := b.get("/console/overview?range=1h")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("overview: %s", resp.Status)
	}
	if !strings.Contains(body, `<strong id="total">`+strconv.Itoa(len(evs))+`</strong>`) {
		t.Fatalf("overview total is not %d:\n%s", len(evs), body)
	}
	for set, n := range perSet {
		link := `<a href="/console/events?fusionSet=` + set + `&amp;range=1h">` + set + `</a></td><td>` + strconv.Itoa(n) + `</td>`
		if !strings.Contains(body, link) {
			t.Errorf("overview lacks the legend row %s", link)
		}
	}
	link := `<a href="/console/events?action=reported&amp;range=1h">reported</a></td><td>` + strconv.Itoa(reported) + `</td>`
	if !strings.Contains(body, link) {
		t.Errorf("overview lacks %s", link)
	}
	if strings.Count(body, "<polyline") < 3 {
		t.Errorf("overview draws no chart lines")
	}
	// A filter narrows the counts.
	_, body = b.get("/console/overview?range=1h&fusionSet=bank-beta")
	if !strings.Contains(body, `<strong id="total">`+strconv.Itoa(perSet["bank-beta"])+`</strong>`) {
		t.Errorf("filtered overview total is not %d", perSet["bank-beta"])
	}
	// Offenders: every address with its count, linked to its events.
	_, body = b.get("/console/offenders?range=1h")
	for addr, n := range perAddr {
		row := `<a href="/console/events?clientIP=` + addr + `&amp;range=1h">` + addr + `</a></td><td>` + strconv.Itoa(n) + `</td>`
		if !strings.Contains(body, row) {
			t.Errorf("offenders lack %s", row)
		}
	}
	_, body = b.get("/console/offenders?range=1h&kind=device")
	if !strings.Contains(body, "deviceId=dev-a") || !strings.Contains(body, `kind=device&amp;range=7d`) {
		t.Errorf("device offenders lack dev-a or the range links lose the tab")
	}
	// The support desk's path: the reference finds its events.
	target := evs[7]
	_, body = b.get("/console/events?range=1h&externalId=" + url.QueryEscape(target.ExternalID))
	want := 0
	for _, ev := range evs {
		if ev.ExternalID == target.ExternalID {
			want++
		}
	}
	if got := strings.Count(body, `<tr class="doc">`); got != want || !strings.Contains(body, target.ID) {
		t.Errorf("externalId search: %d rows, want %d holding %s", got, want, target.ID)
	}
	_, body = b.get("/console/events?externalId=no-such-ref")
	if !strings.Contains(body, "No events match.") {
		t.Error("a reference that matches nothing shows rows")
	}
	// Export of a filter: JSON lines, each an event of the filter.
	resp, body = b.get("/console/export?range=1h&fusionSet=bank-prod")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) != perSet["bank-prod"] {
		t.Fatalf("export holds %d lines, want %d", len(lines), perSet["bank-prod"])
	}
	for _, l := range lines {
		var doc map[string]any
		if err := json.Unmarshal([]byte(l), &doc); err != nil || doc["fusionSet"] != "bank-prod" {
			t.Fatalf("export line %q: %v", l, err)
		}
	}
	// Paging: older events continue where a page ended.
	many := sampleEvents(e.clock.Now().Add(-10*time.Minute), 60)
	e.deliver(t, many)
	_, body = b.get("/console/events?range=1h")
	i := strings.Index(body, `href="/console/events?before=`)
	if i < 0 {
		t.Fatal("a full page has no link to older events")
	}
	older := body[i+len(`href="`):]
	older = strings.ReplaceAll(older[:strings.IndexByte(older, '"')], "&amp;", "&")
	resp, body2 := b.get(older)
	if resp.StatusCode != http.StatusOK || strings.Count(body2, `<tr class="doc">`) != len(evs)+len(many)-50 {
		t.Fatalf("older page: %s, %d rows, want %d", resp.Status, strings.Count(body2, `<tr class="doc">`), len(evs)+len(many)-50)
	}
}

// TestLiveFeedResume: the feed sends each event with its sequence number
// as SSE id; a reconnect with Last-Event-ID gets exactly the events
// after it, none lost, none twice.
func TestLiveFeedResume(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	b.signIn(e.read)
	first := sampleEvents(e.clock.Now(), 12)
	e.deliver(t, first)

	open := func(header ...string) (*http.Response, *bufio.Reader, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/console/stream?after=0", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("feed: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		return resp, bufio.NewReader(resp.Body), cancel
	}
	resp, r, cancel := open()
	got := readSSE(t, r, 12)
	for i, m := range got {
		var fe struct{ ID, Reason string }
		if err := json.Unmarshal([]byte(m.data), &fe); err != nil || fe.ID != first[i].ID || m.event != "threat" {
			t.Fatalf("message %d: %+v (%v), want event %s", i, m, err, first[i].ID)
		}
	}
	// Events arriving while the feed is open are sent to it.
	second := sampleEvents(e.clock.Now(), 5)
	e.deliver(t, second)
	got = append(got, readSSE(t, r, 5)...)
	cancel()
	resp.Body.Close()
	// Disconnected at message 8: the rest come again after it, and events
	// stored while disconnected too.
	third := sampleEvents(e.clock.Now(), 3)
	e.deliver(t, third)
	resp, r, cancel = open("Last-Event-ID", got[7].id)
	defer func() { cancel(); resp.Body.Close() }()
	again := readSSE(t, r, 17-8+3)
	all := append(append(append([]*threat.Event{}, first...), second...), third...)
	prev, _ := strconv.ParseInt(got[7].id, 10, 64)
	for i, m := range again {
		var fe struct{ ID string }
		json.Unmarshal([]byte(m.data), &fe)
		if fe.ID != all[8+i].ID {
			t.Fatalf("resumed message %d is %s, want %s", i, fe.ID, all[8+i].ID)
		}
		seq, _ := strconv.ParseInt(m.id, 10, 64)
		if seq <= prev {
			t.Fatalf("ids not rising: %d after %d", seq, prev)
		}
		prev = seq
	}
	// A filtered feed sends only its events.
	fresp, err := b.c.Get(e.ts.URL + "/console/stream?after=0&action=reported")
	if err != nil {
		t.Fatal(err)
	}
	defer fresp.Body.Close()
	wantReported := 0
	for _, ev := range all {
		if ev.Action == threat.ActionReported {
			wantReported++
		}
	}
	for _, m := range readSSE(t, bufio.NewReader(fresp.Body), wantReported) {
		if !strings.Contains(m.data, `"action":"reported"`) {
			t.Fatalf("filtered feed sent %s", m.data)
		}
	}
}

// TestRetention: the server's housekeeping purges raw events older than
// --event-retention and keeps their per-minute counts, so the overview
// still shows them.
func TestRetention(t *testing.T) {
	ck := testclock.New(time.Now().UTC())
	dir := t.TempDir()
	s, err := server.Open(context.Background(), server.Config{DataDir: dir, Now: ck.Now, EventRetention: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := &env{srv: s, clock: ck}
	e.ts = httptest.NewTLSServer(s.Handler())
	defer e.ts.Close()
	e.ingest = httptest.NewServer(s.Handler())
	defer e.ingest.Close()
	e.writer, _, err = s.Tokens().Create(context.Background(), "gw", []auth.Scope{auth.ScopeEventsWrite}, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.read, _, err = s.Tokens().Create(context.Background(), "rd", []auth.Scope{auth.ScopeRead}, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	old := sampleEvents(ck.Now().Add(-40*time.Minute), 6)
	recent := sampleEvents(ck.Now(), 4)
	e.deliver(t, append(old, recent...))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, _, err := s.DB().ListEvents(context.Background(), store.EventQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == len(recent) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events left after housekeeping, want %d", len(left), len(recent))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	b := e.browser(t)
	b.signIn(e.read)
	_, body := b.get("/console/overview?range=1h")
	if !strings.Contains(body, `<strong id="total">10</strong>`) {
		t.Fatal("the overview lost the purged events' counts")
	}
}
