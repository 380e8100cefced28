package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// certsSetDoc is the fusion set the builds tests publish: no trusted_ca,
// so the server's CA for the set is used; build-1337 is blocked.
const certsSetDoc = `fusion_sets:
  - id: bank-prod
    app_id: com.example.bank
    mode: defense
    threat_events: true
    max_lifetime: 400d
    builds:
      blocked: [build-1337]
`

// certsClock is a clock the tests move.
type certsClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *certsClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *certsClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// certsEnv is a real API on a real SQLite data directory (or a given
// database) behind a real HTTP server, with bank-prod published and one
// token per scope.
type certsEnv struct {
	db     *store.DB
	api    *api.API
	srv    *httptest.Server
	clock  *certsClock
	tokens map[auth.Scope]string
}

func certsStart(t *testing.T) *certsEnv {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := certsStartOn(t, db, kek, &certsClock{now: time.Now().UTC()})
	e.publish(t, certsSetDoc)
	return e
}

// certsStartOn starts an API instance on db (two instances may share one
// PostgreSQL database and KEK).
func certsStartOn(t *testing.T, db *store.DB, kek *keys.Sealer, clock *certsClock) *certsEnv {
	t.Helper()
	tokens := auth.NewTokens(db, clock.Now)
	a := api.New(api.Deps{DB: db, Tokens: tokens, Keys: kek, Authorities: authority.New(db, kek, clock.Now), Now: clock.Now})
	e := &certsEnv{db: db, api: a, srv: httptest.NewServer(a.Handler()), clock: clock, tokens: map[auth.Scope]string{}}
	t.Cleanup(e.srv.Close)
	for _, s := range []auth.Scope{auth.ScopeAdmin, auth.ScopeRead, auth.ScopeIssue, auth.ScopeRevoke} {
		secret, _, err := tokens.Create(context.Background(), "certs-"+time.Now().Format("150405.000000000")+"-"+string(s), []auth.Scope{s}, 0, "cli:test")
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[s] = secret
	}
	return e
}

func (e *certsEnv) publish(t *testing.T, doc string) {
	t.Helper()
	resp, body := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", auth.ScopeAdmin, []byte(doc), "Content-Type", "application/yaml")
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing bank-prod: %d %s", resp.StatusCode, body)
	}
}

// do makes a request with the token of scope ("" for none); headers are
// name, value pairs. A 5xx fails the test: no input may cause one.
func (e *certsEnv) do(t *testing.T, method, path string, scope auth.Scope, body []byte, headers ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if scope != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[scope])
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp, data
}

// json makes a request with a JSON body and decodes the answer into out
// after checking the status (problems: application/problem+json).
func (e *certsEnv) json(t *testing.T, method, path string, scope auth.Scope, in any, status int, out any, headers ...string) *http.Response {
	t.Helper()
	var body []byte
	if in != nil {
		var err error
		if raw, ok := in.(string); ok {
			body = []byte(raw)
		} else if body, err = json.Marshal(in); err != nil {
			t.Fatal(err)
		}
	}
	resp, data := e.do(t, method, path, scope, body, append([]string{"Content-Type", "application/json"}, headers...)...)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, data)
	}
	if status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s %s: %d as %q", method, path, status, resp.Header.Get("Content-Type"))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp
}

// certsProblem is a problem body.
type certsProblem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Errors []struct {
		Field  string `json:"field"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

func (p certsProblem) fields() []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// certsBuild is the answer of POST .../builds.
type certsBuild struct {
	Certificate struct {
		Serial, SHA256, FusionSet, AppID, BuildID, Kind, Profile, Status, IssuedBy string
		NotAfter                                                                   time.Time
	} `json:"certificate"`
	Bundle       certsBundle     `json:"bundle"`
	LegacyBundle *certsBundle    `json:"legacyBundle"`
	Record       json.RawMessage `json:"record"`
}

type certsBundle struct {
	Format, SHA256, Password string
	Data                     []byte
}

// issue issues a build through the API.
func (e *certsEnv) issue(t *testing.T, build string, extra map[string]any) certsBuild {
	t.Helper()
	req := map[string]any{"appId": "com.example.bank", "buildId": build}
	for k, v := range extra {
		req[k] = v
	}
	var out certsBuild
	e.json(t, "POST", "/v1/fusion-sets/bank-prod/builds", auth.ScopeIssue, req, http.StatusCreated, &out)
	return out
}
