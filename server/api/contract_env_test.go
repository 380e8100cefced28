package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"

	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// contractEnv is the real API on a real SQLite data directory behind a
// real HTTP server, with every answer checked against openapi.json.
type contractEnv struct {
	db     *store.DB
	tokens *auth.Tokens
	srv    *httptest.Server
	// token holds a token of each scope.
	token map[auth.Scope]string
	// skew moves the server's clock (tokens expire), in nanoseconds.
	skew atomic.Int64

	check *contractChecker
}

// contractStart starts the API. limiter may be nil (no rate limit).
func contractStart(t testing.TB, limiter *auth.Limiter) *contractEnv {
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
	e := &contractEnv{db: db, token: map[auth.Scope]string{}, check: contractNewChecker(t)}
	now := func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }
	e.tokens = auth.NewTokens(db, now)
	a := api.New(api.Deps{DB: db, Tokens: e.tokens, Limiter: limiter, Keys: kek,
		Authorities: authority.New(db, kek, now), Now: now, Version: "test"})
	e.srv = httptest.NewServer(a.Handler())
	t.Cleanup(e.srv.Close)
	for _, s := range auth.AllScopes {
		name := "contract-" + strings.ReplaceAll(string(s), ":", "-")
		if e.token[s], _, err = e.tokens.Create(ctx, name, []auth.Scope{s}, 0, "cli:test"); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// contractReq is one request of a test.
type contractReq struct {
	method, path string
	token        string            // "" = none
	ctype        string            // Content-Type; application/json when body is set and ctype is ""
	body         string            // "" = no body
	header       map[string]string // more request headers
	want         int               // the status the test expects
	// lenient: the server may accept what the document would not (a
	// hostile value it ignores); only the answer is checked.
	lenient bool
}

// contractResp is an answer.
type contractResp struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body into v.
func (r contractResp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, r.body)
	}
}

// do sends q, checks the status, and validates the answer (and, for a
// successful answer, the request too) against the document.
func (e *contractEnv) do(t testing.TB, q contractReq) contractResp {
	t.Helper()
	req := q.build(t, e.srv.URL)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", q.method, q.path, err)
	}
	r := contractResp{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode >= 500 {
		t.Errorf("%s %s: %d (no input may yield a 5xx): %s", q.method, q.path, resp.StatusCode, body)
	}
	if q.want != 0 && resp.StatusCode != q.want {
		t.Errorf("%s %s: status %d, want %d: %s", q.method, q.path, resp.StatusCode, q.want, body)
	}
	e.check.answer(t, q, q.build(t, e.srv.URL), r)
	return r
}

func (q contractReq) build(t testing.TB, base string) *http.Request {
	t.Helper()
	var rd io.Reader
	if q.body != "" {
		rd = strings.NewReader(q.body)
	}
	req, err := http.NewRequest(q.method, base+q.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if q.token != "" {
		req.Header.Set("Authorization", "Bearer "+q.token)
	}
	if q.body != "" {
		ct := q.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range q.header {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	return req
}

// contractChecker validates requests and answers against openapi.json and
// records which routes had a successful and a failing request.
type contractChecker struct {
	v       validator.Validator
	problem *base.Schema
	schemas schema_validation.SchemaValidator
	routes  *http.ServeMux // api.Routes() patterns, to name a request's route

	mu      sync.Mutex
	success map[string]bool // "GET /v1/x/{id}"
	failure map[string]bool
}

func contractNewChecker(t testing.TB) *contractChecker {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.OpenAPIDocument())
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	c := &contractChecker{
		v:       validator.NewValidatorFromV3Model(&model.Model, config.WithFormatAssertions()),
		problem: model.Model.Components.Schemas.GetOrZero("Problem").Schema(),
		schemas: schema_validation.NewSchemaValidator(config.WithFormatAssertions()),
		routes:  http.NewServeMux(),
		success: map[string]bool{}, failure: map[string]bool{},
	}
	for _, r := range api.Routes() {
		c.routes.HandleFunc(r.Method+" "+r.Pattern, func(http.ResponseWriter, *http.Request) {})
	}
	return c
}

// route names the registered route req goes to, or "".
func (c *contractChecker) route(req *http.Request) string {
	_, p := c.routes.Handler(req)
	if !strings.Contains(p, " ") {
		return ""
	}
	return p
}

// pathRoute names a registered route on req's path with any method (for
// 405 answers), or "".
func (c *contractChecker) pathRoute(req *http.Request) string {
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		probe := req.Clone(context.Background())
		probe.Method = m
		if p := c.route(probe); p != "" {
			return p
		}
	}
	return ""
}

func (c *contractChecker) answer(t testing.TB, q contractReq, req *http.Request, r contractResp) {
	t.Helper()
	route := c.route(req)
	if r.status == http.StatusMethodNotAllowed {
		route = c.pathRoute(req)
	}
	c.mu.Lock()
	switch {
	case route == "":
	case r.status < 400:
		c.success[route] = true
	default:
		c.failure[route] = true
	}
	c.mu.Unlock()

	if r.status >= 400 {
		c.problemBody(t, q, r)
	}
	if route == "" || r.status == http.StatusMethodNotAllowed {
		// Not an operation of the document: the problem body is all
		// there is to check.
		return
	}
	resp := &http.Response{StatusCode: r.status, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body)), Request: req}
	if r.status < 400 && !q.lenient {
		// A request the server accepts must be one the document accepts.
		if ok, errs := c.v.ValidateHttpRequest(req); !ok {
			t.Errorf("%s %s: the request the server accepted does not match openapi.json:\n%s", q.method, q.path, contractErrors(errs))
		}
	}
	if r.status < 400 {
		req = q.build(t, "http://x") // the body was consumed
		resp.Request = req
	}
	if ok, errs := c.v.ValidateHttpResponse(req, resp); !ok {
		t.Errorf("%s %s: the %d answer does not match openapi.json:\n%s\nbody: %.600s", q.method, q.path, r.status, contractErrors(errs), r.body)
	}
}

// problemBody checks a 4xx/5xx answer is an RFC 9457 problem of the
// document's Problem schema whose status is the answer's.
func (c *contractChecker) problemBody(t testing.TB, q contractReq, r contractResp) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s %s: %d answered with Content-Type %q, want application/problem+json", q.method, q.path, r.status, ct)
		return
	}
	if ok, errs := c.schemas.ValidateSchemaBytes(c.problem, r.body); !ok {
		t.Errorf("%s %s: the problem does not match the Problem schema:\n%s\nbody: %s", q.method, q.path, contractErrors(errs), r.body)
	}
	var p struct {
		Status int `json:"status"`
	}
	if json.Unmarshal(r.body, &p) == nil && p.Status != r.status {
		t.Errorf("%s %s: problem status %d in a %d answer", q.method, q.path, p.Status, r.status)
	}
}

// uncovered lists the routes that had no successful or no failing request.
func (c *contractChecker) uncovered() (noSuccess, noFailure []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range api.Routes() {
		k := r.Method + " " + r.Pattern
		if !c.success[k] {
			noSuccess = append(noSuccess, k)
		}
		if !c.failure[k] {
			noFailure = append(noFailure, k)
		}
	}
	slices.Sort(noSuccess)
	slices.Sort(noFailure)
	return noSuccess, noFailure
}
