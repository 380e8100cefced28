package api_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

// contractSetDoc is the fusion set the walk publishes: no trusted_ca, so
// the server creates the set's CA.
const contractSetDoc = `fusion_sets:
  - id: walk-prod
    app_id: com.example.walk
    mode: defense
    threat_events: true
`

// TestContractWalk makes, for every route of api.Routes(), at least one
// successful and one failing request against the real API on a real
// SQLite directory, and validates every request the server accepts and
// every answer against openapi.json. It fails when a route is left out.
func TestContractWalk(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin, read, issue := e.token[auth.ScopeAdmin], e.token[auth.ScopeRead], e.token[auth.ScopeIssue]
	revoke, events := e.token[auth.ScopeRevoke], e.token[auth.ScopeEventsWrite]
	jsonOf := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Server.
	e.send(t, contractReq{method: "GET", path: "/v1/health", want: 200})
	e.send(t, contractReq{method: "POST", path: "/v1/health", body: "{}", want: 405})
	e.send(t, contractReq{method: "GET", path: "/v1/openapi.json", want: 200})
	e.send(t, contractReq{method: "DELETE", path: "/v1/openapi.json", want: 405})
	e.send(t, contractReq{method: "GET", path: "/v1/no-such-route", token: admin, want: 404})

	// Tokens.
	var created struct {
		Token struct{ ID string } `json:"token"`
	}
	e.send(t, contractReq{method: "POST", path: "/v1/tokens", token: admin,
		body: `{"name":"ci-android","scopes":["issue","read"],"expiresIn":"720h"}`, want: 201}).json(t, &created)
	e.send(t, contractReq{method: "POST", path: "/v1/tokens", token: admin, body: `{"name":"x","scopes":["read"],"color":"red"}`, want: 422})
	e.send(t, contractReq{method: "GET", path: "/v1/tokens", token: admin, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/tokens", token: read, want: 403})
	e.send(t, contractReq{method: "DELETE", path: "/v1/tokens/" + created.Token.ID, token: admin, want: 200})
	e.send(t, contractReq{method: "DELETE", path: "/v1/tokens/0000000000000000", token: admin, want: 404})

	// Fusion sets.
	var cand struct{ Valid bool }
	e.send(t, contractReq{method: "POST", path: "/v1/validate", token: read, ctype: "application/yaml", body: contractSetDoc, want: 200}).json(t, &cand)
	if !cand.Valid {
		t.Fatalf("the walk's fusion set does not validate")
	}
	e.send(t, contractReq{method: "POST", path: "/v1/validate", token: read, ctype: "text/plain", body: contractSetDoc, want: 415})
	e.send(t, contractReq{method: "PUT", path: "/v1/fusion-sets/walk-prod", token: admin, ctype: "application/yaml", body: contractSetDoc,
		header: map[string]string{"If-None-Match": "*"}, want: 201})
	e.send(t, contractReq{method: "PUT", path: "/v1/fusion-sets/walk-prod", token: admin, ctype: "application/yaml", body: contractSetDoc, want: 428})
	e.send(t, contractReq{method: "PUT", path: "/v1/fusion-sets/walk-prod", token: admin, ctype: "application/yaml", body: contractSetDoc,
		header: map[string]string{"If-Match": `"7"`}, want: 412})
	v2 := strings.Replace(contractSetDoc, "threat_events: true", "threat_events: false", 1)
	e.send(t, contractReq{method: "PUT", path: "/v1/fusion-sets/walk-prod", token: admin, body: jsonOf(map[string]string{"document": v2, "comment": "quieter"}),
		header: map[string]string{"If-Match": `"1"`}, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets?limit=10", token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets?limit=0", token: read, want: 422})
	r := e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod", token: read, want: 200})
	if got := r.header.Get("ETag"); got != `"2"` {
		t.Errorf("ETag %q after two versions, want \"2\"", got)
	}
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/no-such-set", token: read, want: 404})
	var versions struct {
		Items []struct {
			Changes []string `json:"changes"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/versions?limit=1", token: read, want: 200}).json(t, &versions)
	if versions.NextCursor == "" {
		t.Errorf("a page of 1 of 2 versions has no nextCursor")
	}
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/versions?cursor=" + versions.NextCursor, token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/versions?cursor=bm90LWEtY3Vyc29y", token: read, want: 400})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/versions/1", token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/versions/99", token: read, want: 404})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/ca.pem", want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/no-such-set/ca.pem", want: 404})

	// Builds: a retry with the same key answers the same build.
	build := `{"appId":"com.example.walk","buildId":"b-1","buildUser":"ci","profile":"both"}`
	key := map[string]string{"Idempotency-Key": "walk-b-1"}
	var issued struct {
		Certificate struct{ Serial string } `json:"certificate"`
		Bundle      struct{ Data, Password string }
		Record      json.RawMessage `json:"record"`
	}
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/builds", token: issue, body: build, header: key, want: 201}).json(t, &issued)
	r = e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/builds", token: issue, body: build, header: key, want: 201})
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a retry with the same Idempotency-Key is not marked Idempotent-Replayed")
	}
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/builds", token: issue,
		body: `{"appId":"com.example.walk","buildId":"b-2"}`, header: key, want: 422})
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/builds", token: issue, body: `{"appId":"com.example.walk","buildId":7}`, want: 422})
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/builds", token: read, body: build, want: 403})

	// Enrollment, over mTLS on the enrollment listener.
	bundle, err := base64.StdEncoding.DecodeString(issued.Bundle.Data)
	if err != nil {
		t.Fatal(err)
	}
	bc := buildTLS(t, issuedBundle{Data: bundle, Password: issued.Bundle.Password})
	dev := newDevice(t, "walk-install-1")
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/enroll/challenge", cert: bc, body: `{"installId":"walk-install-1"}`, want: 200})
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/enroll/challenge", cert: bc, body: `{"installId":""}`, want: 422})
	dev.take(t, e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/enroll", cert: bc, body: dev.enrollBody("walk-device"), want: 201}))
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/enroll", cert: bc, body: `{"installId":"walk-install-2"}`, want: 422})
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/renew", cert: dev.cert, body: `{}`, want: 409}) // too early
	e.clock.Add(dev.cert.Leaf.NotAfter.Sub(dev.cert.Leaf.NotBefore)/2 + time.Minute)
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/renew", cert: dev.cert, body: `{}`, want: 201})
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/renew", cert: dev.cert, body: `{}`, want: 200}) // a retry
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/walk-prod/renew", body: `{}`, want: 401})

	// Certificates and records.
	serial := issued.Certificate.Serial
	e.send(t, contractReq{method: "GET", path: "/v1/certificates?fusionSet=walk-prod&status=valid&issuedAfter=2020-01-01T00:00:00Z", token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/certificates?status=sleepy", token: read, want: 422})
	e.send(t, contractReq{method: "GET", path: "/v1/certificates/" + serial, token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/certificates/abcdef0123", token: read, want: 404})
	var verdict struct{ Valid bool }
	e.send(t, contractReq{method: "POST", path: "/v1/records/verify", token: read,
		body: jsonOf(map[string]any{"record": issued.Record, "bundle": issued.Bundle.Data, "password": issued.Bundle.Password}), want: 200}).json(t, &verdict)
	if !verdict.Valid {
		t.Errorf("the record the server issued does not verify")
	}
	e.send(t, contractReq{method: "POST", path: "/v1/records/verify", token: read, body: `{"record":"nope"}`, want: 422})

	// Revocation, then the CRL.
	e.send(t, contractReq{method: "POST", path: "/v1/revocations", token: revoke, body: jsonOf(map[string]any{"serial": serial, "reason": "keyCompromise"}), want: 200})
	e.send(t, contractReq{method: "POST", path: "/v1/revocations", token: revoke, body: `{"serials":["abcdef0123"]}`, want: 422})
	r = e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/crl.pem", want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/crl.der", header: map[string]string{"If-None-Match": r.header.Get("ETag")}, want: 304})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/walk-prod/crl.der", want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/no-such-set/crl.pem", want: 404})
	e.send(t, contractReq{method: "GET", path: "/v1/fusion-sets/no-such-set/crl.der", want: 404})

	// Events.
	ev := threattest.Event(threat.ReasonCertRevoked)
	ev.FusionSet = "walk-prod"
	e.send(t, contractReq{method: "POST", path: "/v1/events", token: events, body: jsonOf(map[string]any{"events": []*threat.Event{ev}}), want: 200})
	e.send(t, contractReq{method: "POST", path: "/v1/events", token: events, body: `{"events":[{"schema":"mcc.threat-event/v1"}]}`, want: 422})
	e.send(t, contractReq{method: "GET", path: "/v1/events?fusionSet=walk-prod&reason=CERT_REVOKED&from=2020-01-01T00:00:00Z", token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/events?from=yesterday", token: read, want: 422})
	e.send(t, contractReq{method: "GET", path: "/v1/events/" + url.PathEscape(ev.ID), token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/events/00000000-0000-0000-0000-000000000000", token: read, want: 404})

	// Audit.
	e.send(t, contractReq{method: "GET", path: "/v1/audit?limit=2", token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/audit?limit=501", token: read, want: 422})
	e.send(t, contractReq{method: "GET", path: "/v1/audit/verify", token: read, want: 200})
	e.send(t, contractReq{method: "GET", path: "/v1/audit/verify", want: 401})

	noSuccess, noFailure := e.contract(t).uncovered()
	if len(noSuccess) > 0 {
		t.Errorf("routes without a successful request in the walk: %v", noSuccess)
	}
	if len(noFailure) > 0 {
		t.Errorf("routes without a failing request in the walk: %v", noFailure)
	}
}

// TestContractCheckerCatchesDrift: the walk's checker refuses answers
// that do not match the document, so the walk can fail.
func TestContractCheckerCatchesDrift(t *testing.T) {
	c := contractNewChecker(t)
	for _, d := range []struct {
		path, ctype, body string
		status            int
	}{
		{"/v1/health", "application/json", `{"status":"ok"}`, 200},                                                               // members missing
		{"/v1/health", "application/json", `{"status":"ok","version":"1","database":"sqlite","schemaVersion":1,"extra":1}`, 200}, // member added
		{"/v1/health", "application/json", `{"status":"ok","version":"1","database":"mysql","schemaVersion":1}`, 200},            // value out of enum
		{"/v1/health", "text/plain", `ok`, 200},                                                                                  // content type
		{"/v1/health", "application/problem+json", `{"type":"urn:mcc:problem:teapot","title":"x","status":418}`, 418},            // undocumented status
		{"/v1/audit/verify", "application/problem+json", `{"type":"urn:mcc:problem:nope","title":"x","status":401}`, 401},        // unknown type
	} {
		req := contractReq{method: "GET", path: d.path}.build(t, "http://x")
		resp := &http.Response{StatusCode: d.status, Header: http.Header{"Content-Type": {d.ctype}},
			Body: io.NopCloser(strings.NewReader(d.body)), Request: req}
		if ok, _ := c.v.ValidateHttpResponse(req, resp); ok {
			t.Errorf("GET %s %d %s %s: accepted, want refused", d.path, d.status, d.ctype, d.body)
		}
	}
}

// TestContractQueryParameters: every query parameter the document
// declares is one the server takes: a valid value of it alone answers 200.
// (The walk's validator catches the other direction for the values it
// sends; the server refuses undeclared parameters itself.)
func TestContractQueryParameters(t *testing.T) {
	e := startAPI(t, envOptions{})
	admin := e.token[auth.ScopeAdmin]
	e.send(t, contractReq{method: "PUT", path: "/v1/fusion-sets/walk-prod", token: admin, ctype: "application/yaml", body: contractSetDoc, want: 201})
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]contractParam `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths {
		var op struct {
			Parameters []contractParam `json:"parameters"`
		}
		if json.Unmarshal(item["get"], &op) != nil {
			continue
		}
		for _, p := range op.Parameters {
			if p.Ref != "" {
				p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
			}
			if p.In != "query" || p.Name == "cursor" { // a cursor must come from a page
				continue
			}
			target := strings.ReplaceAll(path, "{set}", "walk-prod") + "?" + p.Name + "=" + url.QueryEscape(p.Schema.example())
			e.send(t, contractReq{method: "GET", path: target, token: admin, want: 200})
		}
	}
}

// contractParam is a parameter of the document, as much as the test needs.
type contractParam struct {
	Ref    string              `json:"$ref"`
	Name   string              `json:"name"`
	In     string              `json:"in"`
	Schema contractParamSchema `json:"schema"`
}

type contractParamSchema struct {
	Type     string   `json:"type"`
	Format   string   `json:"format"`
	Enum     []string `json:"enum"`
	Pattern  string   `json:"pattern"`
	Minimum  *int     `json:"minimum"`
	Examples []string `json:"examples"`
}

// example is a valid value of the parameter's schema.
func (s contractParamSchema) example() string {
	switch {
	case len(s.Examples) > 0:
		return s.Examples[0]
	case len(s.Enum) > 0:
		return s.Enum[0]
	case s.Type == "integer" && s.Minimum != nil:
		return strconv.Itoa(*s.Minimum + 1)
	case s.Type == "integer":
		return "1"
	case s.Format == "date-time":
		return "2026-01-01T00:00:00Z"
	}
	return "walk-prod" // fits every string pattern the document uses for a query
}
