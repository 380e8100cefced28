package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// setsEnv is a real API on a real SQLite data directory behind a real
// HTTP server, with an admin and a read-only token.
type setsEnv struct {
	dir           string
	db            *store.DB
	tokens        *auth.Tokens
	authorities   *authority.Authorities
	srv           *httptest.Server
	admin, reader string
}

func setsStart(t *testing.T) *setsEnv {
	return setsStartWith(t, nil)
}

func setsStartWith(t *testing.T, limiter *auth.Limiter) *setsEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek, err := keys.LoadOrCreate(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := &setsEnv{dir: dir, db: db, tokens: auth.NewTokens(db, time.Now), authorities: authority.New(db, kek, time.Now)}
	a := api.New(api.Deps{DB: db, Tokens: e.tokens, Limiter: limiter, Keys: kek, Authorities: e.authorities})
	e.srv = httptest.NewServer(a.Handler())
	t.Cleanup(e.srv.Close)
	if e.admin, _, err = e.tokens.Create(ctx, "admin", []auth.Scope{auth.ScopeAdmin}, 0, "cli:test"); err != nil {
		t.Fatal(err)
	}
	if e.reader, _, err = e.tokens.Create(ctx, "reader", []auth.Scope{auth.ScopeRead}, 0, "cli:test"); err != nil {
		t.Fatal(err)
	}
	return e
}

// do makes a request; headers are name, value pairs ("Content-Type"
// included).
func (e *setsEnv) do(t *testing.T, method, path, token, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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

// want checks the status and decodes a JSON (or problem) body into v.
func setsWant(t *testing.T, resp *http.Response, data []byte, status int, v any) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, data)
	}
	ct := resp.Header.Get("Content-Type")
	if status >= 400 && ct != "application/problem+json" {
		t.Fatalf("%s %s: a %d with Content-Type %q", resp.Request.Method, resp.Request.URL.Path, status, ct)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s %s: %v: %s", resp.Request.Method, resp.Request.URL.Path, err, data)
		}
	}
}

// setsProblem is a problem body.
type setsProblem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field  string `json:"field"`
		Line   int    `json:"line"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

func (p setsProblem) hasField(field string) bool {
	for _, e := range p.Errors {
		if e.Field == field {
			return true
		}
	}
	return false
}
