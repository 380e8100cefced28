package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
	"github.com/mccgate/mcc/threat/webhook"
)

// eventsEnv is the real API on a real SQLite data directory behind a real
// HTTP server, with a gateway token (events:write) and a reader.
type eventsEnv struct {
	db             *store.DB
	srv            *httptest.Server
	writer, reader string
}

func eventsStart(t *testing.T) *eventsEnv {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tokens := auth.NewTokens(db, time.Now)
	e := &eventsEnv{db: db}
	e.srv = httptest.NewServer(api.New(api.Deps{DB: db, Tokens: tokens}).Handler())
	t.Cleanup(e.srv.Close)
	if e.writer, _, err = tokens.Create(ctx, "gateway", []auth.Scope{auth.ScopeEventsWrite}, 0, "cli:test"); err != nil {
		t.Fatal(err)
	}
	if e.reader, _, err = tokens.Create(ctx, "reader", []auth.Scope{auth.ScopeRead}, 0, "cli:test"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *eventsEnv) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, b
}

// eventsBatch encodes events the way the webhook sink does.
func eventsBatch(t *testing.T, evs ...*threat.Event) string {
	t.Helper()
	parts := make([]string, len(evs))
	for i, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		parts[i] = string(b)
	}
	return `{"events":[` + strings.Join(parts, ",") + `]}`
}

type eventsPage struct {
	Items      []map[string]any `json:"items"`
	NextCursor string           `json:"nextCursor"`
}

func (e *eventsEnv) list(t *testing.T, query string) eventsPage {
	t.Helper()
	code, body := e.do(t, "GET", "/v1/events?"+query, e.reader, "")
	if code != 200 {
		t.Fatalf("list ?%s: %d %s", query, code, body)
	}
	var p eventsPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEventsWebhookSinkDeliversOnce runs the gateways' real webhook sink
// against the API with a bearer token: every event arrives once, and a
// batch sent again (a lost response) is counted as duplicates.
func TestEventsWebhookSinkDeliversOnce(t *testing.T) {
	e := eventsStart(t)
	sink, err := webhook.New(webhook.Options{
		URL: e.srv.URL + "/v1/events", Headers: map[string]string{"Authorization": "Bearer " + e.writer},
		SpoolDir: t.TempDir(), BatchSize: 7, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var evs []*threat.Event
	for i := 0; i < 30; i++ {
		ev := threattest.Event(threat.AllReasons[i%len(threat.AllReasons)])
		ev.Time = ev.Time.Add(time.Duration(i) * time.Second)
		evs = append(evs, ev)
	}
	if err := sink.Deliver(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	// The same events delivered again, as a restarted sink with an
	// untrusted cursor would.
	if err := sink.Deliver(context.Background(), evs[:10]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sink.Stats().Delivered < 40 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if st := sink.Stats(); st.Delivered != 40 || st.Rejected != 0 {
		t.Fatalf("sink stats %+v, want 40 delivered, none rejected", st)
	}
	p := e.list(t, "limit=500")
	if len(p.Items) != 30 {
		t.Fatalf("%d events stored, want 30 (each once)", len(p.Items))
	}
	// Newest first; each item is the event as sent, plus receivedAt, and
	// still valid against the published schema once receivedAt is removed.
	for i, it := range p.Items {
		if it["id"] != evs[29-i].ID {
			t.Fatalf("item %d is %v, want %s", i, it["id"], evs[29-i].ID)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(it["receivedAt"])); err != nil {
			t.Fatalf("receivedAt: %v", err)
		}
		delete(it, "receivedAt")
		b, _ := json.Marshal(it)
		if err := schematest.ValidateEventJSON(b); err != nil {
			t.Fatal(err)
		}
	}
	// Posting a batch again directly: all duplicates, nothing changes.
	code, body := e.do(t, "POST", "/v1/events", e.writer, eventsBatch(t, evs[0], evs[1], threattest.Event(threat.ReasonCertRevoked)))
	if code != 200 || strings.TrimSpace(string(body)) != `{"accepted":1,"duplicates":2}` {
		t.Fatalf("re-post: %d %s", code, body)
	}
	// A batch repeating one id within itself stores it once.
	dup := threattest.Event(threat.ReasonCertExpired)
	code, body = e.do(t, "POST", "/v1/events", e.writer, eventsBatch(t, dup, dup))
	if code != 200 || strings.TrimSpace(string(body)) != `{"accepted":1,"duplicates":1}` {
		t.Fatalf("repeated id: %d %s", code, body)
	}
}

func TestEventsScopes(t *testing.T) {
	e := eventsStart(t)
	batch := eventsBatch(t, threattest.Event(threat.ReasonCertRevoked))
	if code, body := e.do(t, "POST", "/v1/events", e.reader, batch); code != 403 || !strings.Contains(string(body), `"scope":"events:write"`) {
		t.Fatalf("reader posting events: %d %s", code, body)
	}
	if code, _ := e.do(t, "GET", "/v1/events", e.writer, ""); code != 403 {
		t.Fatalf("gateway token listing events: %d", code)
	}
	if code, _ := e.do(t, "POST", "/v1/events", "mcc_0000000000000000_"+strings.Repeat("A", 43), batch); code != 401 {
		t.Fatalf("unknown token: %d", code)
	}
}

// eventsMutate returns a valid event's JSON object changed by fn.
func eventsMutate(t *testing.T, fn func(m map[string]any)) string {
	t.Helper()
	b, err := json.Marshal(threattest.Event(threat.ReasonCertRevoked))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestEventsIngestRefusesBadEvents sends events the schema refuses, and
// events the schema allows but the server's storage limits do not: each
// is a 422 naming events[i].field, the batch is stored not at all, and
// for the schema cases the published schema agrees that the event is bad.
func TestEventsIngestRefusesBadEvents(t *testing.T) {
	e := eventsStart(t)
	cert := func(m map[string]any) map[string]any { return m["certificate"].(map[string]any) }
	cases := []struct {
		name, field string
		schemaBad   bool
		mutate      func(m map[string]any)
	}{
		{"missing reasonCode", "reasonCode", true, func(m map[string]any) { delete(m, "reasonCode") }},
		{"missing id", "id", true, func(m map[string]any) { delete(m, "id") }},
		{"unknown reason", "reasonCode", true, func(m map[string]any) { m["reasonCode"] = "NOPE" }},
		{"unknown field", "color", true, func(m map[string]any) { m["color"] = "red" }},
		{"field in other case", "ReasonCode", true, func(m map[string]any) { m["ReasonCode"] = "CERT_REVOKED" }},
		{"wrong schema", "schema", true, func(m map[string]any) { m["schema"] = "mcc.threat-event/v2" }},
		{"bad id", "id", true, func(m map[string]any) { m["id"] = "1' OR '1'='1" }},
		{"bad time", "time", true, func(m map[string]any) { m["time"] = "yesterday" }},
		{"score type", "threatEventsScore", true, func(m map[string]any) { m["threatEventsScore"] = "12" }},
		{"negative score", "currentThreatEventScore", true, func(m map[string]any) { m["currentThreatEventScore"] = -1 }},
		{"bool type", "failSafeEnforce", true, func(m map[string]any) { m["failSafeEnforce"] = 1 }},
		{"null string", "clientIP", true, func(m map[string]any) { m["clientIP"] = nil }},
		{"mode", "mode", true, func(m map[string]any) { m["mode"] = "offense" }},
		{"certificate extra key", "certificate.pem", true, func(m map[string]any) { cert(m)["pem"] = "-----BEGIN" }},
		{"certificate missing serial", "certificate.serial", true, func(m map[string]any) { delete(cert(m), "serial") }},
		{"certificate sha256", "certificate.sha256", true, func(m map[string]any) { cert(m)["sha256"] = "ABC" }},
		{"reasonData not object", "reasonData", true, func(m map[string]any) { m["reasonData"] = []any{1} }},
		{"long fusion set", "fusionSet", false, func(m map[string]any) { m["fusionSet"] = strings.Repeat("a", 300) }},
		{"NUL in device id", "deviceID", false, func(m map[string]any) { m["deviceID"] = "a\x00b" }},
		{"time out of range", "time", false, func(m map[string]any) { m["time"] = "2300-01-01T00:00:00Z" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := eventsMutate(t, c.mutate)
			schemaErr := schematest.ValidateEventJSON([]byte(bad))
			if c.schemaBad != (schemaErr != nil) {
				t.Fatalf("schema verdict %v, case says schemaBad=%v", schemaErr, c.schemaBad)
			}
			good, _ := json.Marshal(threattest.Event(threat.ReasonCertExpired))
			code, body := e.do(t, "POST", "/v1/events", e.writer, `{"events":[`+string(good)+`,`+bad+`]}`)
			var p struct {
				Type   string `json:"type"`
				Errors []struct{ Field string }
			}
			json.Unmarshal(body, &p)
			if code != 422 || p.Type != "urn:mcc:problem:invalid-request" || len(p.Errors) == 0 || p.Errors[0].Field != "events[1]."+c.field {
				t.Fatalf("got %d %s, want 422 at events[1].%s", code, body, c.field)
			}
		})
	}
	if p := e.list(t, ""); len(p.Items) != 0 {
		t.Fatalf("%d events stored from refused batches", len(p.Items))
	}
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"events":[1]}`, 422},
		{`{"events":{}}`, 422},
		{`{}`, 422},
		{`{"events":[]} x`, 400},
		{`{"events":[{"id":` + strings.Repeat(`"x",`, 3) + `}]}`, 400},
		{`{"events":[` + strings.Repeat(`{},`, 1000) + `{}]}`, 422},
		{`{"events":["` + strings.Repeat("a", 70<<10) + `"]}`, 422},
		{`{"events":[{"reasonData":{"x":"` + strings.Repeat("a", 9<<20) + `"}}]}`, 413},
		{"{\"events\":[{\"message\":\"\xff\xfe\"}]}", 422},
	} {
		if code, body := e.do(t, "POST", "/v1/events", e.writer, c.body); code != c.code {
			t.Errorf("body %.60q: %d %s, want %d", c.body, code, body, c.code)
		}
	}
}

// TestEventsQuery stores events through the API and reads them back by
// every filter, in newest-first keyset pages.
func TestEventsQuery(t *testing.T) {
	e := eventsStart(t)
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var evs []*threat.Event
	for i := 0; i < 60; i++ {
		ev := threattest.Event(threat.AllReasons[i%3])
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		ev.FusionSet = []string{"bank-prod", "bank-test"}[i%2]
		ev.ClientIP = fmt.Sprintf("2001:db8::%x", i%5)
		ev.Device["deviceID"] = fmt.Sprintf("dev-%d", i%7)
		ev.Certificate.Serial = fmt.Sprintf("%X", 0xabc0+i%4)
		ev.ExternalID = fmt.Sprintf("req-%d", i)
		evs = append(evs, ev)
	}
	// Two events at the same time: the id orders them.
	evs[59].Time = evs[58].Time
	if code, body := e.do(t, "POST", "/v1/events", e.writer, eventsBatch(t, evs...)); code != 200 || !strings.Contains(string(body), `"accepted":60`) {
		t.Fatalf("ingest: %d %s", code, body)
	}
	// want lists the ids matching pred, newest first.
	want := func(pred func(i int, ev *threat.Event) bool) []string {
		var out []*threat.Event
		for i, ev := range evs {
			if pred(i, ev) {
				out = append(out, ev)
			}
		}
		var ids []string
		for len(out) > 0 {
			best := 0
			for j, ev := range out {
				b := out[best]
				if ev.Time.After(b.Time) || (ev.Time.Equal(b.Time) && ev.ID > b.ID) {
					best = j
				}
			}
			ids = append(ids, out[best].ID)
			out = append(out[:best], out[best+1:]...)
		}
		return ids
	}
	from, to := base.Add(10*time.Minute), base.Add(40*time.Minute)
	cases := []struct {
		query string
		pred  func(i int, ev *threat.Event) bool
	}{
		{"", func(int, *threat.Event) bool { return true }},
		{"fusionSet=bank-test", func(_ int, ev *threat.Event) bool { return ev.FusionSet == "bank-test" }},
		{"reason=" + string(threat.AllReasons[1]) + "&from=" + from.Format(time.RFC3339) + "&to=" + to.Format(time.RFC3339),
			func(_ int, ev *threat.Event) bool {
				return ev.ReasonCode == threat.AllReasons[1] && !ev.Time.Before(from) && ev.Time.Before(to)
			}},
		{"clientIP=2001:0db8:0:0::3", func(_ int, ev *threat.Event) bool { return ev.ClientIP == "2001:db8::3" }},
		{"deviceId=dev-2&fusionSet=bank-prod", func(_ int, ev *threat.Event) bool {
			return ev.Device["deviceID"] == "dev-2" && ev.FusionSet == "bank-prod"
		}},
		{"serial=ABC1", func(_ int, ev *threat.Event) bool { return ev.Certificate.Serial == "ABC1" }},
		{"externalId=req-17", func(i int, _ *threat.Event) bool { return i == 17 }},
		{"externalId=req-17&reason=CERT_REVOKED", func(int, *threat.Event) bool { return false }},
	}
	for _, c := range cases {
		expect := want(c.pred)
		if c.query != "" && (len(expect) == len(evs)) {
			t.Fatalf("%s: the filter matches everything: a weak case", c.query)
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			q := c.query + "&limit=7"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			p := e.list(t, q)
			for _, it := range p.Items {
				got = append(got, it["id"].(string))
			}
			if p.NextCursor == "" {
				break
			}
			if pages > 20 {
				t.Fatalf("%s: no end of pages", c.query)
			}
			cursor = p.NextCursor
		}
		if strings.Join(got, ",") != strings.Join(expect, ",") {
			t.Errorf("?%s:\n got %v\nwant %v", c.query, got, expect)
		}
	}

	// One event by id, with receivedAt; unknown and malformed ids are 404.
	code, body := e.do(t, "GET", "/v1/events/"+evs[3].ID, e.reader, "")
	var one map[string]any
	if code != 200 || json.Unmarshal(body, &one) != nil || one["externalID"] != "req-3" || one["receivedAt"] == nil {
		t.Fatalf("get: %d %s", code, body)
	}
	for _, id := range []string{threat.NewEventID(), "not-an-id", "%27%20OR%201=1"} {
		if code, body := e.do(t, "GET", "/v1/events/"+id, e.reader, ""); code != 404 {
			t.Errorf("get %s: %d %s", id, code, body)
		}
	}

	// Parameters that cannot mean anything are refused, naming themselves.
	for q, field := range map[string]string{
		"reason=NOPE":        "reason",
		"clientIP=300.1.1.1": "clientIP",
		"serial=xyz":         "serial",
		"from=yesterday":     "from",
		"from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z": "to",
		"to=3000-01-01T00:00:00Z":                           "to",
		"limit=0":                                           "limit",
		"limit=501":                                         "limit",
		"fusionset=bank-prod":                               "fusionset",
		"reason=CERT_REVOKED&reason=CERT_EXPIRED":           "reason",
		"deviceId=" + strings.Repeat("d", 300):              "deviceId",
	} {
		code, body := e.do(t, "GET", "/v1/events?"+q, e.reader, "")
		if code != 422 || !strings.Contains(string(body), `"field":"`+field+`"`) {
			t.Errorf("?%.60s: %d %s, want 422 naming %s", q, code, body, field)
		}
	}
	for _, cur := range []string{"nope!", "e30", "eyJ0IjoxLCJ4IjoyfQ"} {
		if code, body := e.do(t, "GET", "/v1/events?cursor="+cur, e.reader, ""); code != 400 {
			t.Errorf("cursor %s: %d %.200s", cur, code, body)
		}
	}
}
