package api_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mccgate/mcc/server/auth"
)

type recordsVerdict struct {
	Valid   bool
	Check   string
	Detail  string
	Revoked bool
	Record  *struct{ AppID string }
}

func TestRecordsVerify(t *testing.T) {
	e := startBankProd(t)
	b := e.issue(t, "b1", nil)
	other := e.issue(t, "b2", nil)
	verify := func(in any) recordsVerdict {
		t.Helper()
		var v recordsVerdict
		e.json(t, "POST", "/v1/records/verify", e.token[auth.ScopeRead], in, 200, &v)
		return v
	}
	if v := verify(map[string]any{"record": b.Record, "bundle": b.Bundle.Data, "password": b.Bundle.Password}); !v.Valid || v.Revoked || v.Record == nil || v.Record.AppID != "com.example.bank" {
		t.Fatalf("good record and bundle: %+v", v)
	}
	// Re-indented in transit is fine; an edited value is not.
	var indented bytes.Buffer
	json.Indent(&indented, b.Record, "", "\t")
	if v := verify(map[string]any{"record": json.RawMessage(indented.Bytes())}); !v.Valid {
		t.Fatalf("re-indented record: %+v", v)
	}
	edited := bytes.Replace(b.Record, []byte(`"id":"b1"`), []byte(`"id":"b9"`), 1)
	if v := verify(map[string]any{"record": json.RawMessage(edited)}); v.Valid || v.Check != "signature" {
		t.Fatalf("edited record: %+v", v)
	}
	if v := verify(map[string]any{"record": b.Record, "bundle": b.Bundle.Data, "password": "wrong"}); v.Valid || v.Check != "bundle-decode" {
		t.Fatalf("wrong password: %+v", v)
	}
	if v := verify(map[string]any{"record": b.Record, "bundle": other.Bundle.Data, "password": other.Bundle.Password}); v.Valid || v.Check != "bundle-sha256" {
		t.Fatalf("another build's bundle: %+v", v)
	}
	foreign := bytes.Replace(b.Record, []byte(`"fusionSet":"bank-prod"`), []byte(`"fusionSet":"shop-prod"`), 1)
	if v := verify(map[string]any{"record": json.RawMessage(foreign)}); v.Valid || v.Check != "ca" {
		t.Fatalf("record of a set without a CA here: %+v", v)
	}
	// Revoked shows.
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serial": b.Certificate.Serial}, 200, nil)
	if v := verify(map[string]any{"record": b.Record}); !v.Valid || !v.Revoked {
		t.Fatalf("revoked record: %+v", v)
	}
	for name, body := range map[string]string{
		"no record":           `{}`,
		"record not object":   `{"record":"x"}`,
		"bundle, no password": `{"record":{},"bundle":"AAAA"}`,
		"bundle not base64":   `{"record":{},"bundle":"***","password":"x"}`,
	} {
		var p apiProblem
		e.json(t, "POST", "/v1/records/verify", e.token[auth.ScopeRead], body, 422, &p)
		if len(p.Errors) != 1 {
			t.Fatalf("%s: %+v", name, p)
		}
	}
}

func TestCertsListAndGet(t *testing.T) {
	e := startBankProd(t)
	var serials []string
	for _, build := range []string{"b1", "b2", "b2", "b3", "b4"} {
		serials = append(serials, e.issue(t, build, nil).Certificate.Serial)
	}
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serial": serials[0]}, 200, nil)
	type page struct {
		Items []struct {
			Serial, Status, BuildID string
		}
		NextCursor string
	}
	// Walk everything one per page: each once, newest first.
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		var p page
		e.json(t, "GET", "/v1/certificates?fusionSet=bank-prod&limit=2&cursor="+cursor, e.token[auth.ScopeRead], nil, 200, &p)
		pages++
		for _, c := range p.Items {
			if seen[c.Serial] {
				t.Fatalf("%s listed twice", c.Serial)
			}
			seen[c.Serial] = true
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(seen) != 5 || pages != 3 {
		t.Fatalf("%d certificates over %d pages", len(seen), pages)
	}
	count := func(q string) int {
		var p page
		e.json(t, "GET", "/v1/certificates?"+q, e.token[auth.ScopeRead], nil, 200, &p)
		return len(p.Items)
	}
	for q, want := range map[string]int{
		"buildId=b2":                        2,
		"appId=com.example.bank&buildId=b2": 2,
		"status=revoked":                    1,
		"status=valid":                      4,
		"status=expired":                    0,
		"fusionSet=other":                   0,
		"issuedAfter=2000-01-01T00:00:00Z":  5,
		"issuedBefore=2000-01-01T00:00:00Z": 0,
		"expiresAfter=2100-01-01T00:00:00Z": 0,
	} {
		if n := count(q); n != want {
			t.Errorf("%s: %d, want %d", q, n, want)
		}
	}
	for q, status := range map[string]int{
		"status=gone":         422,
		"fusionset=bank-prod": 422,
		"limit=0":             422,
		"limit=501":           422,
		"issuedAfter=today":   422,
		"cursor=!!!":          400,
		"cursor=e30":          200, // {} : from the start
	} {
		e.json(t, "GET", "/v1/certificates?"+q, e.token[auth.ScopeRead], nil, status, nil)
	}
	e.json(t, "GET", "/v1/certificates/"+serials[1], e.token[auth.ScopeRead], nil, 200, nil)
	e.json(t, "GET", "/v1/certificates/0123456789", e.token[auth.ScopeRead], nil, 404, nil)
	e.json(t, "GET", "/v1/certificates/not-hex", e.token[auth.ScopeRead], nil, 404, nil)
	e.json(t, "GET", "/v1/certificates", "", nil, 401, nil)
	e.json(t, "GET", "/v1/certificates", e.token[auth.ScopeIssue], nil, 403, nil)
}
