package console_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
	"github.com/mccgate/mcc/threat/webhook"
)

// env is a real mcc server (SQLite, or PostgreSQL when url is given)
// serving its handler over TLS, with tokens of each kind.
type env struct {
	srv    *server.Server
	ts     *httptest.Server
	ingest *httptest.Server
	clock  *testclock.Clock
	read   string // token with read
	admin  string
	writer string // events:write only
}

func startEnv(t *testing.T, databaseURL string, tweak ...func(*server.Config)) *env {
	t.Helper()
	ck := testclock.New(time.Now().UTC())
	cfg := server.Config{DataDir: t.TempDir(), Now: ck.Now, RateLimit: -1}
	for _, f := range tweak {
		f(&cfg)
	}
	if databaseURL != "" {
		cfg.DatabaseURL = databaseURL
		cfg.KEKFile = t.TempDir() + "/kek.key"
		if _, err := keys.LoadOrCreate(cfg.KEKFile); err != nil {
			t.Fatal(err)
		}
	}
	s, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := &env{srv: s, clock: ck}
	e.ts = httptest.NewTLSServer(s.Handler())
	t.Cleanup(e.ts.Close)
	// Gateways post over loopback HTTP here: the sink trusts the system
	// roots only, not the test server's certificate.
	e.ingest = httptest.NewServer(s.Handler())
	t.Cleanup(e.ingest.Close)
	mk := func(name string, scopes ...auth.Scope) string {
		secret, _, err := s.Tokens().Create(context.Background(), name, scopes, 0, "test")
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	e.read = mk("reader", auth.ScopeRead)
	e.admin = mk("admin", auth.ScopeAdmin)
	e.writer = mk("gateway", auth.ScopeEventsWrite)
	return e
}

// browser is an HTTP client with a cookie jar that sends Origin on POST
// as a browser does.
type browser struct {
	t      *testing.T
	e      *env
	c      *http.Client
	origin string
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := *e.ts.Client() // a copy: each browser has its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, e: e, c: &c, origin: e.ts.URL}
}

func (b *browser) get(path string, header ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest("GET", b.e.ts.URL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req, header...)
}

// do sends req with the extra header pairs and reads the whole answer.
func (b *browser) do(req *http.Request, header ...string) (*http.Response, string) {
	b.t.Helper()
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// post sends a form from origin (the console's own unless changed).
func (b *browser) post(path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest("POST", b.e.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	return b.do(req, header...)
}

// signIn signs the browser in with token and returns the session cookie.
func (b *browser) signIn(token string) *http.Cookie {
	b.t.Helper()
	resp, body := b.post("/console/signin", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/overview" {
		b.t.Fatalf("sign-in: %s %s", resp.Status, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "mcc_console" {
			return c
		}
	}
	b.t.Fatal("sign-in set no session cookie")
	return nil
}

// csrf reads the CSRF token from a page's sign-out form.
func (b *browser) csrf() string {
	b.t.Helper()
	_, body := b.get("/console/overview")
	const marker = `name="csrf" value="`
	i := strings.Index(body, marker)
	if i < 0 {
		b.t.Fatalf("no CSRF token in the overview:\n%s", body)
	}
	rest := body[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// deliver sends events through the gateways' real webhook sink to the
// server's /v1/events and waits until they are delivered.
func (e *env) deliver(t *testing.T, evs []*threat.Event) {
	t.Helper()
	sink := e.sink(t)
	if err := sink.Deliver(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sink.Stats().Delivered < uint64(len(evs)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if st := sink.Stats(); st.Delivered != uint64(len(evs)) || st.Rejected != 0 {
		t.Fatalf("sink stats %+v, want %d delivered", st, len(evs))
	}
}

// sink is a gateway's webhook sink posting to this server's ingest.
func (e *env) sink(t *testing.T) *webhook.Sink {
	t.Helper()
	sink, err := webhook.New(webhook.Options{
		URL: e.ingest.URL + "/v1/events", Headers: map[string]string{"Authorization": "Bearer " + e.writer},
		SpoolDir: t.TempDir(), MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

// sampleEvents makes n schema-valid events at now minus a few seconds,
// with reasons, sets, addresses and devices varied.
func sampleEvents(now time.Time, n int) []*threat.Event {
	var out []*threat.Event
	for i := 0; i < n; i++ {
		ev := threattest.Event(threat.AllReasons[i%len(threat.AllReasons)])
		ev.Time = now.Add(-time.Duration(n-i) * time.Second)
		ev.FusionSet = []string{"bank-prod", "bank-beta"}[i%2]
		ev.ClientIP = []string{"192.0.2.10", "192.0.2.11", "198.51.100.7"}[i%3]
		ev.Device["deviceID"] = []string{"dev-a", "dev-b"}[i%2]
		ev.ExternalID = "req-" + string(rune('a'+i%26))
		if i%4 == 0 {
			ev.Action = threat.ActionReported
		}
		out = append(out, ev)
	}
	return out
}

// sseEvent is one message read from the live feed.
type sseEvent struct {
	id, event, data string
}

// readSSE reads n messages (comments and retry lines skipped).
func readSSE(t *testing.T, r *bufio.Reader, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	for len(out) < n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the feed after %d messages: %v", len(out), err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if cur.data != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out
}

// sessionHash is what the store keeps of a cookie's session.
func sessionHash(t *testing.T, c *http.Cookie) []byte {
	secret, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(secret)
	return sum[:]
}

// apiJSON GETs an API path with token and decodes the JSON answer.
func (e *env) apiJSON(t *testing.T, path, token string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", e.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}
