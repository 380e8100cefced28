package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// The one test environment of the API tests: the real API on a real
// database (a new SQLite data directory, or a given one such as a real
// PostgreSQL database) behind a real HTTP server, with real tokens.

// apiClock is the server's clock: the wall clock, or a frozen time; Add
// moves either forward (CRLs fall due, tokens expire).
type apiClock struct {
	mu     sync.Mutex
	frozen time.Time // zero: the wall clock
	ahead  time.Duration
}

// frozenClock stops the server's time at now, until the test moves it.
func frozenClock() *apiClock { return &apiClock{frozen: time.Now().UTC()} }

func (c *apiClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.frozen
	if now.IsZero() {
		now = time.Now()
	}
	return now.Add(c.ahead)
}

func (c *apiClock) Add(d time.Duration) {
	c.mu.Lock()
	c.ahead += d
	c.mu.Unlock()
}

// envOptions says what differs between the tests' environments; the zero
// value is a new SQLite directory, the wall clock, no rate limit and a
// token of every scope.
type envOptions struct {
	// scopes get a token each, named after the scope, in this order (the
	// tests count tokens and audit entries); nil: every scope.
	scopes  []auth.Scope
	limiter *auth.Limiter
	// addressLimiter limits the enrollment routes per client address.
	addressLimiter *auth.Limiter
	clock          *apiClock
	// db is a database another instance may share; kek is then its key.
	db  *store.DB
	kek *keys.Sealer
	// tokens, with db, are another instance's tokens: a second instance
	// behind a load balancer takes the same CI tokens, it makes none.
	tokens map[auth.Scope]string
}

// apiEnv is one running API instance and the tokens the test calls it with.
type apiEnv struct {
	dir    string // the SQLite data directory ("" on a given database)
	db     *store.DB
	tokens *auth.Tokens
	api    *api.API
	srv    *httptest.Server
	enroll *httptest.Server // the enrollment listener (mTLS)
	clock  *apiClock
	token  map[auth.Scope]string // the secret of each scope's token

	checkOnce sync.Once
	checker   *contractChecker
}

// startAPI starts an API instance as o says; everything stops with the test.
func startAPI(t testing.TB, o envOptions) *apiEnv {
	t.Helper()
	ctx := context.Background()
	e := &apiEnv{db: o.db, clock: o.clock, token: o.tokens}
	kek := o.kek
	if e.db == nil {
		e.dir = t.TempDir()
		db, err := store.Open(ctx, store.Options{DataDir: e.dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		e.db = db
		if kek, err = keys.LoadOrCreate(filepath.Join(e.dir, "kek.key")); err != nil {
			t.Fatal(err)
		}
	}
	if e.clock == nil {
		e.clock = &apiClock{}
	}
	e.tokens = auth.NewTokens(e.db, e.clock.Now)
	e.api = api.New(api.Deps{DB: e.db, Tokens: e.tokens, Limiter: o.limiter, AddressLimiter: o.addressLimiter, Keys: kek,
		Authorities: authority.New(e.db, kek, e.clock.Now), Now: e.clock.Now, Version: "test"})
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)
	// The enrollment listener, as mcc server runs it: its own handler,
	// TLS asking every client for a certificate.
	e.enroll = httptest.NewUnstartedServer(e.api.EnrollHandler())
	e.enroll.TLS = server.EnrollTLS(&tls.Config{})
	e.enroll.StartTLS()
	t.Cleanup(e.enroll.Close)
	if e.token != nil {
		return e
	}
	scopes := o.scopes
	if scopes == nil {
		scopes = auth.AllScopes
	}
	e.token = map[auth.Scope]string{}
	for _, s := range scopes {
		secret, _, err := e.tokens.Create(ctx, strings.ReplaceAll(string(s), ":", "-"), []auth.Scope{s}, 0, "cli:test")
		if err != nil {
			t.Fatal(err)
		}
		e.token[s] = secret
	}
	return e
}

// bankProdDoc is the fusion set the certificate tests publish: no
// trusted_ca, so the server's CA for the set is used; build-1337 is
// blocked.
const bankProdDoc = `fusion_sets:
  - id: bank-prod
    app_id: com.example.bank
    mode: defense
    threat_events: true
    max_lifetime: 400d
    builds:
      blocked: [build-1337]
`

// adminAndRead are the tokens of the fusion set, token and audit tests.
var adminAndRead = []auth.Scope{auth.ScopeAdmin, auth.ScopeRead}

// bankProdScopes are the tokens of the certificate tests.
var bankProdScopes = []auth.Scope{auth.ScopeAdmin, auth.ScopeRead, auth.ScopeIssue, auth.ScopeRevoke}

// startBankProd starts the API on a frozen clock with bank-prod published.
func startBankProd(t *testing.T) *apiEnv {
	t.Helper()
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: frozenClock()})
	e.publish(t, bankProdDoc)
	return e
}

// publish puts doc as bank-prod with the admin token.
func (e *apiEnv) publish(t *testing.T, doc string) {
	t.Helper()
	resp, body := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], doc, "Content-Type", "application/yaml")
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing bank-prod: %d %s", resp.StatusCode, body)
	}
}

// newRequest is a request to base+path with token as bearer ("" for none)
// and headers as name, value pairs.
func newRequest(t testing.TB, base, method, path, token, body string, headers ...string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// enrollClient is a client of the enrollment listener presenting cert.
func (e *apiEnv) enrollClient(cert *tls.Certificate) *http.Client {
	tr := e.enroll.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	return &http.Client{Transport: tr}
}

// roundTrip sends req and reads the whole answer.
func (e *apiEnv) roundTrip(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	return roundTripWith(t, e.srv.Client(), req)
}

// roundTripWith sends req with client and reads the whole answer.
func roundTripWith(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL.Path, err)
	}
	return resp, data
}

// do makes a request with token ("" for none); headers are name, value
// pairs, Content-Type included (none is sent unless given). A 5xx fails
// the test: no input may cause one.
func (e *apiEnv) do(t testing.TB, method, path, token, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	resp, data := e.roundTrip(t, newRequest(t, e.srv.URL, method, path, token, body, headers...))
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp, data
}

// json makes a request with a JSON body (in: a string as it is, anything
// else marshalled; nil: no body), checks the status and decodes the
// answer into out (nil: not decoded).
func (e *apiEnv) json(t testing.TB, method, path, token string, in any, status int, out any, headers ...string) *http.Response {
	t.Helper()
	var body string
	switch v := in.(type) {
	case nil:
	case string:
		body = v
	default:
		raw, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = string(raw)
	}
	resp, data := e.do(t, method, path, token, body, append([]string{"Content-Type", "application/json"}, headers...)...)
	wantAnswer(t, resp, data, status, out)
	return resp
}

// wantAnswer checks the status (a 4xx or 5xx must be a problem) and
// decodes a JSON (or problem) body into v (nil: not decoded).
func wantAnswer(t testing.TB, resp *http.Response, data []byte, status int, v any) {
	t.Helper()
	method, path := resp.Request.Method, resp.Request.URL.Path
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, data)
	}
	if ct := resp.Header.Get("Content-Type"); status >= 400 && ct != "application/problem+json" {
		t.Fatalf("%s %s: a %d with Content-Type %q", method, path, status, ct)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// apiProblem is a problem body, as much as the tests look at.
type apiProblem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Scope  string `json:"scope"`
	Errors []struct {
		Field  string `json:"field"`
		Line   int    `json:"line"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

// fields names the fields of errors[], in order.
func (p apiProblem) fields() []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

func (p apiProblem) hasField(field string) bool {
	return slices.Contains(p.fields(), field)
}

// issuedBuild is the answer of POST .../builds.
type issuedBuild struct {
	Certificate struct {
		Serial, SHA256, FusionSet, AppID, BuildID, Kind, Profile, Status, IssuedBy string
		NotAfter                                                                   time.Time
	} `json:"certificate"`
	Bundle       issuedBundle    `json:"bundle"`
	LegacyBundle *issuedBundle   `json:"legacyBundle"`
	Record       json.RawMessage `json:"record"`
}

type issuedBundle struct {
	Format, SHA256, Password string
	Data                     []byte
}

// issue issues a build of bank-prod through the API.
func (e *apiEnv) issue(t *testing.T, build string, extra map[string]any) issuedBuild {
	t.Helper()
	req := map[string]any{"appId": "com.example.bank", "buildId": build}
	for k, v := range extra {
		req[k] = v
	}
	var out issuedBuild
	e.json(t, "POST", "/v1/fusion-sets/bank-prod/builds", e.token[auth.ScopeIssue], req, http.StatusCreated, &out)
	return out
}

// contractReq is a request whose answer send checks against openapi.json.
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
	// cert, when set, sends the request to the enrollment listener over
	// mTLS with this client certificate.
	cert *tls.Certificate
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

// contract is the environment's checker, made on first use (parsing the
// document is the slow part of a start, and most tests do not need it).
func (e *apiEnv) contract(t testing.TB) *contractChecker {
	t.Helper()
	e.checkOnce.Do(func() { e.checker = contractNewChecker(t) })
	return e.checker
}

// send sends q, checks the status, and validates the answer (and, for a
// successful answer, the request too) against the document.
func (e *apiEnv) send(t testing.TB, q contractReq) contractResp {
	t.Helper()
	check := e.contract(t)
	base, client := e.srv.URL, e.srv.Client()
	if q.cert != nil {
		base, client = e.enroll.URL, e.enrollClient(q.cert)
	}
	resp, body := roundTripWith(t, client, q.build(t, base))
	r := contractResp{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode >= 500 {
		t.Errorf("%s %s: %d (no input may yield a 5xx): %s", q.method, q.path, resp.StatusCode, body)
	}
	if q.want != 0 && resp.StatusCode != q.want {
		t.Errorf("%s %s: status %d, want %d: %s", q.method, q.path, resp.StatusCode, q.want, body)
	}
	check.answer(t, q, q.build(t, base), r)
	return r
}

func (q contractReq) build(t testing.TB, base string) *http.Request {
	t.Helper()
	var headers []string
	if q.body != "" {
		ct := q.ctype
		if ct == "" {
			ct = "application/json"
		}
		headers = append(headers, "Content-Type", ct)
	}
	for k, v := range q.header {
		if v != "" {
			headers = append(headers, k, v)
		}
	}
	return newRequest(t, base, q.method, q.path, q.token, q.body, headers...)
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
