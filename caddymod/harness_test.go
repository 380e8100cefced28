package caddymod

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/mccgate/mcc/internal/caddytesting"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// Ports of the in-process Caddy. High and unusual, so that other packages'
// test servers on this machine do not collide with them.
const (
	testHTTPPort  = 29080
	testHTTPSPort = 29443
	// testHost is the site address and the SNI: under TLS client auth Caddy
	// refuses a request whose Host differs from the SNI.
	testHost = "mcc.localhost"
)

// loadTimeout is generous: the machine is small and shared.
const loadTimeout = 60 * time.Second

// newTester returns a caddytest Tester on this package's admin port.
func newTester(t *testing.T) *caddytest.Tester {
	t.Helper()
	return caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		LoadRequestTimeout: loadTimeout,
		TestRequestTimeout: loadTimeout,
	})
}

// loadCaddyfile loads cfg into the in-process Caddy and waits until it runs.
func loadCaddyfile(t *testing.T, cfg string) *caddytest.Tester {
	t.Helper()
	tc := newTester(t)
	tc.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.Fatalf("loading the Caddyfile failed:\n%s", cfg)
	}
	return tc
}

// postLoad POSTs a config to the admin API and returns the status and body,
// for tests that expect a refusal.
func postLoad(t *testing.T, cfg, contentType string) (int, string) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		resp, err := adminClient().Post(fmt.Sprintf("http://localhost:%d/load", adminPort), contentType, strings.NewReader(cfg))
		if err != nil {
			// Every load restarts the admin listener; a request that met
			// the old one going away is sent again.
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	t.Fatalf("POST /load: %v", lastErr)
	return 0, ""
}

// adminClient talks to the admin API without keep-alive: each config load
// replaces the admin listener, and a pooled connection to the old one would
// be reset.
func adminClient() *http.Client {
	return &http.Client{Timeout: loadTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

// resetCaddy loads a config without the mcc app, so that the pooled engine,
// store and pipeline of earlier tests are released and the next test starts
// with no scores and no bans.
func resetCaddy(t *testing.T) {
	t.Helper()
	loadCaddyfile(t, fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	persist_config off
	auto_https off
}
`, adminPort, testHTTPPort, testHTTPSPort))
	for _, p := range []*struct {
		name string
		n    int
	}{{"store", poolLen(storePool)}, {"pipeline", poolLen(pipelinePool)}, {"state", poolLen(statePool)}} {
		if p.n != 0 {
			t.Fatalf("after unloading the mcc app, the %s pool still holds %d entries", p.name, p.n)
		}
	}
}

func poolLen(p interface{ Range(func(k, v any) bool) }) int {
	n := 0
	p.Range(func(_, _ any) bool { n++; return true })
	return n
}

// runningState returns the pooled state of the running mcc app.
func runningState(t *testing.T) *sharedState {
	t.Helper()
	var st *sharedState
	n := 0
	statePool.Range(func(_, v any) bool {
		st = v.(*sharedState)
		n++
		return true
	})
	if n != 1 {
		t.Fatalf("want exactly one running mcc state, have %d", n)
	}
	return st
}

// serverTLS is the gateway's own certificate, from a CA the test clients trust.
type serverTLS = caddytesting.ServerTLS

func newServerTLS(t *testing.T) serverTLS { return caddytesting.NewServerTLS(t, testHost) }

func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// upstream is the backend behind reverse_proxy. It answers "upstream ok"
// and records the headers of every request it gets, by X-Test-Id.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	got map[string]http.Header
	n   int
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{got: map[string]http.Header{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.got[r.Header.Get("X-Test-Id")] = r.Header.Clone()
		u.n++
		u.mu.Unlock()
		_, _ = io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// headers returns what the upstream saw for the request with testID.
func (u *upstream) headers(testID string) (http.Header, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h, ok := u.got[testID]
	return h, ok
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// client is an HTTPS client that dials the in-process Caddy from a given
// loopback address, presenting the given chain (nil: no certificate).
type client struct {
	http *http.Client
}

func newClient(t *testing.T, srv serverTLS, cert *tls.Certificate, localIP string) *client {
	t.Helper()
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	if localIP != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	tlsCfg := &tls.Config{
		RootCAs:    srv.Roots,
		ServerName: testHost,
		MinVersion: tls.VersionTLS12,
	}
	if cert != nil {
		c := *cert
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			// Always send the chain, whatever CAs the server names: the
			// corpus includes certificates the server does not trust.
			return &c, nil
		}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(testHTTPSPort)))
		},
		TLSClientConfig:     tlsCfg,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: 30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{http: &http.Client{Transport: tr, Timeout: loadTimeout}}
}

// response is what a test request got back.
type response struct {
	status int
	header http.Header
	body   string
}

// get requests path on the test site with the given headers ("Name: value").
func (c *client) get(t *testing.T, path string, headers ...string) (response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d%s", testHost, testHTTPSPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			t.Fatalf("bad header %q", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func (c *client) mustGet(t *testing.T, path string, headers ...string) response {
	t.Helper()
	r, err := c.get(t, path, headers...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// scrapeMetrics reads the admin /metrics and returns the value of every
// series, keyed by its name and sorted labels as Prometheus writes them.
func scrapeMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	var resp *http.Response
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if resp, err = adminClient().Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	return out
}

// series formats a series key the way Prometheus' text format writes it:
// labels sorted by name.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		kvs = append(kvs, kv{labels[i], labels[i+1]})
	}
	for i := 1; i < len(kvs); i++ {
		for j := i; j > 0 && kvs[j].k < kvs[j-1].k; j-- {
			kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
		}
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, p := range kvs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", p.k, p.v)
	}
	b.WriteByte('}')
	return b.String()
}

// sinkEvents reads the file sink's events, each checked against the event
// schema.
func sinkEvents(t *testing.T, path string) []*threat.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatalf("reading the file sink: %v", err)
	}
	// The sink may be writing a line right now: only complete lines count.
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var out []*threat.Event
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := schematest.ValidateEventJSON(line); err != nil {
			t.Fatalf("file sink line %d does not match the event schema: %v\n%s", i+1, err, line)
		}
		e := new(threat.Event)
		if err := json.Unmarshal(line, e); err != nil {
			t.Fatalf("file sink line %d: %v", i+1, err)
		}
		out = append(out, e)
	}
	return out
}

// waitEvents polls the file sink until it holds at least n events.
func waitEvents(t *testing.T, path string, n int) []*threat.Event {
	t.Helper()
	deadline := time.Now().Add(loadTimeout)
	for {
		evs := sinkEvents(t, path)
		if len(evs) >= n || time.Now().After(deadline) {
			if len(evs) < n {
				t.Fatalf("file sink has %d events, want at least %d", len(evs), n)
			}
			return evs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventByExternalID finds the event of one request.
func eventByExternalID(evs []*threat.Event, id string) *threat.Event {
	for _, e := range evs {
		if e.ExternalID == id {
			return e
		}
	}
	return nil
}

// globalOptions is the start of every test Caddyfile's global block; the
// caller adds its own options (mcc, servers) and the closing brace.
func globalOptions() string {
	return fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	persist_config off
	log default {
		level ERROR
	}
`, adminPort, testHTTPPort, testHTTPSPort)
}

// site returns the test site block: TLS with the server certificate and the
// given client_auth body, then the given directives.
func site(srv serverTLS, clientAuth, directives string) string {
	return fmt.Sprintf(`%s:%d {
	tls %s %s {
		client_auth {
%s
		}
	}
%s
}
`, testHost, testHTTPSPort, srv.CertFile, srv.KeyFile, clientAuth, directives)
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
