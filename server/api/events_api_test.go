package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
	"github.com/mccgate/mcc/threat/webhook"
)

// eventsScopes are a gateway's token and a reader's.
var eventsScopes = []auth.Scope{auth.ScopeEventsWrite, auth.ScopeRead}

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

func (e *apiEnv) list(t *testing.T, query string) eventsPage {
	t.Helper()
	resp, body := e.do(t, "GET", "/v1/events?"+query, e.token[auth.ScopeRead], "")
	if resp.StatusCode != 200 {
		t.Fatalf("list ?%s: %d %s", query, resp.StatusCode, body)
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
	e := startAPI(t, envOptions{scopes: eventsScopes})
	sink, err := webhook.New(webhook.Options{
		URL: e.srv.URL + "/v1/events", Headers: map[string]string{"Authorization": "Bearer " + e.token[auth.ScopeEventsWrite]},
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
	resp, body := e.do(t, "POST", "/v1/events", e.token[auth.ScopeEventsWrite], eventsBatch(t, evs[0], evs[1], threattest.Event(threat.ReasonCertRevoked)), "Content-Type", "application/json")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"accepted":1,"duplicates":2}` {
		t.Fatalf("re-post: %d %s", resp.StatusCode, body)
	}
	// A batch repeating one id within itself stores it once.
	dup := threattest.Event(threat.ReasonCertExpired)
	resp, body = e.do(t, "POST", "/v1/events", e.token[auth.ScopeEventsWrite], eventsBatch(t, dup, dup), "Content-Type", "application/json")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"accepted":1,"duplicates":1}` {
		t.Fatalf("repeated id: %d %s", resp.StatusCode, body)
	}
}

func TestEventsScopes(t *testing.T) {
	e := startAPI(t, envOptions{scopes: eventsScopes})
	batch := eventsBatch(t, threattest.Event(threat.ReasonCertRevoked))
	if resp, body := e.do(t, "POST", "/v1/events", e.token[auth.ScopeRead], batch, "Content-Type", "application/json"); resp.StatusCode != 403 || !strings.Contains(string(body), `"scope":"events:write"`) {
		t.Fatalf("reader posting events: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(t, "GET", "/v1/events", e.token[auth.ScopeEventsWrite], ""); resp.StatusCode != 403 {
		t.Fatalf("gateway token listing events: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "POST", "/v1/events", "mcc_0000000000000000_"+strings.Repeat("A", 43), batch, "Content-Type", "application/json"); resp.StatusCode != 401 {
		t.Fatalf("unknown token: %d", resp.StatusCode)
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
	e := startAPI(t, envOptions{scopes: eventsScopes})
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
		// The node names an instance on the gateways view: a name that
		// reads as another one is refused.
		{"right-to-left override in node", "node", false, func(m map[string]any) { m["node"] = "edge-‮1-egde" }},
		{"zero width space in node", "node", false, func(m map[string]any) { m["node"] = "edge​-1" }},
		{"long node", "node", false, func(m map[string]any) { m["node"] = strings.Repeat("n", 300) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := eventsMutate(t, c.mutate)
			schemaErr := schematest.ValidateEventJSON([]byte(bad))
			if c.schemaBad != (schemaErr != nil) {
				t.Fatalf("schema verdict %v, case says schemaBad=%v", schemaErr, c.schemaBad)
			}
			good, _ := json.Marshal(threattest.Event(threat.ReasonCertExpired))
			resp, body := e.do(t, "POST", "/v1/events", e.token[auth.ScopeEventsWrite], `{"events":[`+string(good)+`,`+bad+`]}`, "Content-Type", "application/json")
			var p struct {
				Type   string `json:"type"`
				Errors []struct{ Field string }
			}
			json.Unmarshal(body, &p)
			if resp.StatusCode != 422 || p.Type != "urn:mcc:problem:invalid-request" || len(p.Errors) == 0 || p.Errors[0].Field != "events[1]."+c.field {
				t.Fatalf("got %d %s, want 422 at events[1].%s", resp.StatusCode, body, c.field)
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
		if resp, body := e.do(t, "POST", "/v1/events", e.token[auth.ScopeEventsWrite], c.body, "Content-Type", "application/json"); resp.StatusCode != c.code {
			t.Errorf("body %.60q: %d %s, want %d", c.body, resp.StatusCode, body, c.code)
		}
	}
}

// TestEventsQuery stores events through the API and reads them back by
// every filter, in newest-first keyset pages.
func TestEventsQuery(t *testing.T) {
	e := startAPI(t, envOptions{scopes: eventsScopes})
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
	if resp, body := e.do(t, "POST", "/v1/events", e.token[auth.ScopeEventsWrite], eventsBatch(t, evs...), "Content-Type", "application/json"); resp.StatusCode != 200 || !strings.Contains(string(body), `"accepted":60`) {
		t.Fatalf("ingest: %d %s", resp.StatusCode, body)
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
	resp, body := e.do(t, "GET", "/v1/events/"+evs[3].ID, e.token[auth.ScopeRead], "")
	var one map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &one) != nil || one["externalID"] != "req-3" || one["receivedAt"] == nil {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	for _, id := range []string{threat.NewEventID(), "not-an-id", "%27%20OR%201=1"} {
		if resp, body := e.do(t, "GET", "/v1/events/"+id, e.token[auth.ScopeRead], ""); resp.StatusCode != 404 {
			t.Errorf("get %s: %d %s", id, resp.StatusCode, body)
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
		resp, body := e.do(t, "GET", "/v1/events?"+q, e.token[auth.ScopeRead], "")
		if resp.StatusCode != 422 || !strings.Contains(string(body), `"field":"`+field+`"`) {
			t.Errorf("?%.60s: %d %s, want 422 naming %s", q, resp.StatusCode, body, field)
		}
	}
	for _, cur := range []string{"nope!", "e30", "eyJ0IjoxLCJ4IjoyfQ"} {
		if resp, body := e.do(t, "GET", "/v1/events?cursor="+cur, e.token[auth.ScopeRead], ""); resp.StatusCode != 400 {
			t.Errorf("cursor %s: %d %.200s", cur, resp.StatusCode, body)
		}
	}
}
