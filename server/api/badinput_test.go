package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

// badinputExpect sends q and checks the answer is the problem type (and,
// when field is set, that errors[] names it). The environment's checker
// validates the answer against openapi.json and refuses any 5xx.
func badinputExpect(t *testing.T, e *apiEnv, q contractReq, problem, field string) contractResp {
	t.Helper()
	r := e.send(t, q)
	var p apiProblem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Errorf("%s %s: not a problem: %s", q.method, q.path, r.body)
		return r
	}
	if p.Type != "urn:mcc:problem:"+problem {
		t.Errorf("%s %s: type %q, want urn:mcc:problem:%s (%s)", q.method, q.path, p.Type, problem, r.body)
	}
	if field != "" {
		fields := p.fields()
		if len(fields) == 0 || fields[0] != field {
			t.Errorf("%s %s: errors name %v, want %q first (%s)", q.method, q.path, fields, field, r.body)
		}
	}
	return r
}

func TestBadInputMalformedJSON(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin := e.token[auth.ScopeAdmin]
	for _, body := range []string{
		`{"name":`, `{"name":"a","scopes":["read"]} {}`, `{"name":"a","scopes":["read"]}garbage`,
		`[`, `nul`, "\x00", `{"name":"a\x01"}x`, " \n\t ", `{"name":"a",}`, `'single'`,
	} {
		badinputExpect(t, e, contractReq{method: "POST", path: "/v1/tokens", token: admin, body: body, want: 400}, "malformed-body", "")
	}
}

func TestBadInputWrongTypesAndUnknownFields(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin, revoke, issue := e.token[auth.ScopeAdmin], e.token[auth.ScopeRevoke], e.token[auth.ScopeIssue]
	for _, c := range []struct {
		q     contractReq
		field string
	}{
		{contractReq{method: "POST", path: "/v1/tokens", token: admin, body: `{"name":5,"scopes":["read"]}`}, "name"},
		{contractReq{method: "POST", path: "/v1/tokens", token: admin, body: `{"name":"a","scopes":"read"}`}, "scopes"},
		{contractReq{method: "POST", path: "/v1/tokens", token: admin, body: `{"name":"a","scopes":["read"],"admin":true}`}, "admin"},
		{contractReq{method: "POST", path: "/v1/tokens", token: admin, body: `[]`}, "(body)"},
		{contractReq{method: "POST", path: "/v1/revocations", token: revoke, body: `{"serials":["ab",7]}`}, "serials[1]"},
		{contractReq{method: "POST", path: "/v1/revocations", token: revoke, body: `{"build":{"fusionSet":1}}`}, "build.fusionSet"},
		{contractReq{method: "POST", path: "/v1/revocations", token: revoke, body: `{"build":{"fusionSet":"a","appId":"b","buildId":"c","color":1}}`}, "build.color"},
		{contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/builds", token: issue, body: `{"appId":"a","buildId":"b","validFor":8760}`}, "validFor"},
		{contractReq{method: "GET", path: "/v1/certificates?fusionset=bank-prod", token: admin}, "fusionset"},
		{contractReq{method: "GET", path: "/v1/certificates?limit=-1", token: admin}, "limit"},
		{contractReq{method: "GET", path: "/v1/certificates?limit=99999999999999999999", token: admin}, "limit"},
		{contractReq{method: "GET", path: "/v1/events?to=2026-13-01", token: admin}, "to"},
	} {
		c.q.want = 422
		badinputExpect(t, e, c.q, "invalid-request", c.field)
	}

	// A bad event is named by its index in the batch.
	batch := make([]*threat.Event, 4)
	for i := range batch {
		batch[i] = threattest.Event(threat.ReasonCertExpired)
	}
	raw, _ := json.Marshal(map[string]any{"events": batch})
	var doc map[string][]map[string]any
	json.Unmarshal(raw, &doc)
	doc["events"][3]["reasonCode"] = "NOT_A_REASON"
	raw, _ = json.Marshal(doc)
	badinputExpect(t, e, contractReq{method: "POST", path: "/v1/events", token: e.token[auth.ScopeEventsWrite], body: string(raw), want: 422},
		"invalid-request", "events[3].reasonCode")
}

func TestBadInputMediaTypeAndCursor(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin := e.token[auth.ScopeAdmin]
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset", ";;"} {
		badinputExpect(t, e, contractReq{method: "POST", path: "/v1/tokens", token: admin, ctype: ct, body: `{"name":"a","scopes":["read"]}`, want: 415},
			"unsupported-media-type", "")
	}
	for _, cur := range []string{"!!!", "bm90LWEtY3Vyc29y", "W10", strings.Repeat("A", 5000)} {
		badinputExpect(t, e, contractReq{method: "GET", path: "/v1/certificates?cursor=" + cur, token: admin, want: 400}, "invalid-cursor", "")
	}
}

func TestBadInputBodyTooLarge(t *testing.T) {
	e := startAPI(t, envOptions{})
	big := `{"name":"` + strings.Repeat("a", 1<<20) + `","scopes":["read"]}`
	badinputExpect(t, e, contractReq{method: "POST", path: "/v1/tokens", token: e.token[auth.ScopeAdmin], body: big, want: 413}, "body-too-large", "")
	badinputExpect(t, e, contractReq{method: "PUT", path: "/v1/fusion-sets/bank-prod", token: e.token[auth.ScopeAdmin], ctype: "application/yaml",
		body: "fusion_sets: []\n#" + strings.Repeat("x", 1<<20), want: 413}, "body-too-large", "")
	// Event batches may be 8 MiB: 2 MiB is read (and refused for its
	// content), 9 MiB is not.
	mid := `{"events":[],"pad":"` + strings.Repeat("x", 2<<20) + `"}`
	r := e.send(t, contractReq{method: "POST", path: "/v1/events", token: e.token[auth.ScopeEventsWrite], body: mid})
	if r.status == 413 {
		t.Errorf("a 2 MiB event batch is refused as too large")
	}
	huge := `{"events":[],"pad":"` + strings.Repeat("x", 9<<20) + `"}`
	badinputExpect(t, e, contractReq{method: "POST", path: "/v1/events", token: e.token[auth.ScopeEventsWrite], body: huge, want: 413}, "body-too-large", "")
}

// TestBadInputUnauthorized: a missing, malformed, wrong, unknown, expired
// or revoked token gets the very same answer, which never echoes it.
func TestBadInputUnauthorized(t *testing.T) {
	e := startAPI(t, envOptions{})
	ctx := context.Background()
	good := e.token[auth.ScopeRead]
	expiring, _, err := e.tokens.Create(ctx, "badinput-expiring", []auth.Scope{auth.ScopeRead}, time.Hour, "cli:test")
	if err != nil {
		t.Fatal(err)
	}
	revoked, tok, err := e.tokens.Create(ctx, "badinput-revoked", []auth.Scope{auth.ScopeRead}, 0, "cli:test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.tokens.Revoke(ctx, tok.ID, "cli:test"); err != nil {
		t.Fatal(err)
	}
	// Same id, other secret; an unknown id; not a token at all.
	wrongSecret := good[:len("mcc_0123456789abcdef_")] + strings.Repeat("A", 43)
	unknownID := "mcc_0123456789abcdef" + good[len("mcc_0123456789abcdef"):]
	cases := map[string]contractReq{
		"missing":      {},
		"wrong secret": {token: wrongSecret},
		"unknown id":   {token: unknownID},
		"garbage":      {token: "mcc_" + strings.Repeat("z", 300)},
		"revoked":      {token: revoked},
		"basic":        {header: map[string]string{"Authorization": "Basic YWRtaW46YWRtaW4="}},
		"no space":     {header: map[string]string{"Authorization": "Bearer" + good}},
		"lower scheme": {header: map[string]string{"Authorization": "bearer " + wrongSecret}},
	}
	e.clock.Add(2 * time.Hour)
	cases["expired"] = contractReq{token: expiring}
	var first string
	for name, q := range cases {
		q.method, q.path, q.want = "GET", "/v1/certificates", 401
		r := badinputExpect(t, e, q, "unauthorized", "")
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="mcc"` {
			t.Errorf("%s: WWW-Authenticate %q", name, got)
		}
		if first == "" {
			first = string(r.body)
		} else if string(r.body) != first {
			t.Errorf("%s: the answer differs from another cause's:\n%s\n%s", name, r.body, first)
		}
		for _, secret := range []string{q.token, wrongSecret[21:], revoked[21:], expiring[21:]} {
			if secret != "" && strings.Contains(string(r.body), secret) {
				t.Errorf("%s: the answer echoes the token", name)
			}
		}
	}
	// The good token still works with the moved clock.
	e.send(t, contractReq{method: "GET", path: "/v1/certificates", token: good, want: 200})
}

func TestBadInputForbidden(t *testing.T) {
	e := startAPI(t, envOptions{})
	for _, c := range []struct {
		method, path, body string
		scope              auth.Scope
		token              auth.Scope
	}{
		{"POST", "/v1/fusion-sets/bank-prod/builds", `{"appId":"a","buildId":"b"}`, auth.ScopeIssue, auth.ScopeRead},
		{"POST", "/v1/revocations", `{"serial":"ab"}`, auth.ScopeRevoke, auth.ScopeIssue},
		{"POST", "/v1/events", `{"events":[]}`, auth.ScopeEventsWrite, auth.ScopeRead},
		{"GET", "/v1/certificates", "", auth.ScopeRead, auth.ScopeEventsWrite},
		{"GET", "/v1/tokens", "", auth.ScopeAdmin, auth.ScopeRevoke},
		{"PUT", "/v1/fusion-sets/bank-prod", `{"document":"x"}`, auth.ScopeAdmin, auth.ScopeIssue},
	} {
		r := badinputExpect(t, e, contractReq{method: c.method, path: c.path, body: c.body, token: e.token[c.token], want: 403}, "forbidden", "")
		var p apiProblem
		json.Unmarshal(r.body, &p)
		if p.Scope != string(c.scope) {
			t.Errorf("%s %s: scope %q, want %q", c.method, c.path, p.Scope, c.scope)
		}
	}
}

func TestBadInputRateLimited(t *testing.T) {
	e := startAPI(t, envOptions{limiter: auth.NewLimiter(0.5, 2)})
	tok := e.token[auth.ScopeRead]
	var limited contractResp
	for i := 0; i < 3; i++ {
		limited = e.send(t, contractReq{method: "GET", path: "/v1/audit/verify", token: tok})
	}
	if limited.status != 429 {
		t.Fatalf("third request within the burst of 2: status %d, want 429", limited.status)
	}
	secs, err := strconv.Atoi(limited.header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", limited.header.Get("Retry-After"))
	}
	var p apiProblem
	json.Unmarshal(limited.body, &p)
	if p.Type != "urn:mcc:problem:rate-limited" {
		t.Errorf("type %q", p.Type)
	}
	// Another token has its own budget.
	e.send(t, contractReq{method: "GET", path: "/v1/audit/verify", token: e.token[auth.ScopeAdmin], want: 200})
}

func TestBadInputNotFoundAndMethod(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin := e.token[auth.ScopeAdmin]
	for _, p := range []string{"/v1/nope", "/v1/fusion-sets/..%2f..%2fetc/ca.pem", "/v1/fusion-sets/UPPER/crl.pem", "/v1/certificates/zz%00",
		"/v1/fusion-sets/bank-prod/versions/-1", "/v1/fusion-sets/bank-prod/versions/99999999999999999999", "/v1/events/" + strings.Repeat("a", 2000)} {
		r := e.send(t, contractReq{method: "GET", path: p, token: admin})
		if r.status != 404 && r.status != 422 {
			t.Errorf("GET %s: %d, want 404 or 422: %s", p, r.status, r.body)
		}
	}
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/certificates", "GET"},
		{"PUT", "/v1/events", "GET, POST"},
		{"PATCH", "/v1/fusion-sets/bank-prod", "GET, PUT"},
		{"POST", "/v1/health", "GET"},
	} {
		r := badinputExpect(t, e, contractReq{method: c.method, path: c.path, token: admin, want: 405}, "method-not-allowed", "")
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

// TestBadInputNoServerError sends hostile values to every parameter of
// every list route: none may answer 5xx (the environment checks).
func TestBadInputNoServerError(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin := e.token[auth.ScopeAdmin]
	hostile := []string{"", "%00", "%ff%fe", "'%20OR%201=1--", strings.Repeat("9", 400), "-1", "1e309", "2026-02-30T00:00:00Z", "..%2f..", "%E2%80%AE"}
	params := map[string][]string{
		"/v1/certificates": {"fusionSet", "appId", "buildId", "status", "issuedAfter", "issuedBefore", "expiresAfter", "expiresBefore", "limit", "cursor"},
		"/v1/events":       {"fusionSet", "reason", "from", "to", "clientIP", "deviceId", "serial", "externalId", "limit", "cursor"},
		"/v1/audit":        {"after", "limit", "cursor"},
		"/v1/tokens":       {"limit", "cursor"},
		"/v1/fusion-sets":  {"limit", "cursor"},
	}
	for path, names := range params {
		for _, n := range names {
			for _, v := range hostile {
				r := e.send(t, contractReq{method: "GET", path: fmt.Sprintf("%s?%s=%s", path, n, v), token: admin, lenient: true})
				if r.status != 200 && r.status != 400 && r.status != 422 {
					t.Errorf("GET %s?%s=%s: %d", path, n, v, r.status)
				}
			}
		}
	}
}
