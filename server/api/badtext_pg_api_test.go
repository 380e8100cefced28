package api_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/internal/pgtest"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// TestBadTextOnPostgres: NUL bytes and invalid UTF-8, which PostgreSQL
// refuses to store or compare, in query parameters, JSON strings and
// fusion files are answered 4xx naming what is wrong, never 500 (an
// attacker's review found each of these answering 500).
func TestBadTextOnPostgres(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{URL: pgtest.Start(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := startAPI(t, envOptions{db: db, kek: kek, clock: frozenClock(), scopes: bankProdScopes})
	e.publish(t, bankProdDoc)
	read, admin := e.token[auth.ScopeRead], e.token[auth.ScopeAdmin]
	for _, c := range []struct {
		method, path, token, body, contentType string
		want                                   int
		field                                  string
	}{
		{"GET", "/v1/certificates?fusionSet=%00", read, "", "", 422, "fusionSet"},
		{"GET", "/v1/certificates?appId=%ff", read, "", "", 422, "appId"},
		{"GET", "/v1/certificates?buildId=%ff%fe", read, "", "", 422, "buildId"},
		{"GET", "/v1/events?deviceId=%ff", read, "", "", 422, "deviceId"},
		{"GET", "/v1/events?externalId=a%00b", read, "", "", 422, "externalId"},
		{"POST", "/v1/revocations", admin, `{"reason":"keyCompromise","build":{"fusionSet":"a\u0000","appId":"x","buildId":"y"}}`, "application/json", 422, ""},
		{"PUT", "/v1/fusion-sets/bank-prod", admin, "\xff\xfef\x00u\x00", "application/yaml", 400, ""},
		{"PUT", "/v1/fusion-sets/bank-prod", admin, `{"document":"fusion_sets:\u0000"}`, "application/json", 422, "document"},
	} {
		var headers []string
		if c.contentType != "" {
			headers = append(headers, "Content-Type", c.contentType)
		}
		if c.method == "PUT" {
			headers = append(headers, "If-Match", "*")
		}
		resp, body := e.do(t, c.method, c.path, c.token, c.body, headers...)
		if resp.StatusCode != c.want || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s %q: %d %s, want %d", c.method, c.path, c.body, resp.StatusCode, body, c.want)
			continue
		}
		if c.field != "" && !strings.Contains(string(body), `"field":"`+c.field+`"`) {
			t.Errorf("%s %s: the problem does not name %s: %s", c.method, c.path, c.field, body)
		}
	}
	// Nothing was stored or changed by the refused requests.
	resp, body := e.do(t, "GET", "/v1/fusion-sets/bank-prod/versions", read, "")
	if resp.StatusCode != http.StatusOK || strings.Count(string(body), `"version"`) != 1 {
		t.Errorf("versions after the refused publishes: %d %s", resp.StatusCode, body)
	}
}

// TestValidateBoundsSets: a validate request holding thousands of sets is
// refused before any is compiled (each costs CPU and a stand-in CA).
func TestValidateBoundsSets(t *testing.T) {
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: frozenClock()})
	var doc strings.Builder
	doc.WriteString("fusion_sets:\n")
	for i := range 2000 {
		fmt.Fprintf(&doc, "  - id: s%d\n    app_id: a\n    mode: defense\n", i)
	}
	resp, body := e.do(t, "POST", "/v1/validate", e.token[auth.ScopeRead], doc.String(), "Content-Type", "application/yaml")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"valid":false`) || !strings.Contains(string(body), "at most 256 fusion sets") {
		t.Fatalf("validate with 2000 sets: %d %s", resp.StatusCode, body)
	}
}
