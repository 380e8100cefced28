package parity

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/browsertest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/xdstest"
)

// TestConsoleFedByGateways runs the whole loop the console is for, in
// headless Chromium: a real Caddy (from a Caddyfile) and a real mcc authz
// (Check over gRPC, as Envoy calls it) share a Redis store and post their
// threat events to a real mcc server through their webhook sinks; a real
// mcc xds serves two Envoy nodes. The console shows both gateway
// instances with the version their sinks announce, the Envoy nodes
// SYNCED, every event the gateways sent, and the ban Caddy's refusals
// earned; an admin lifts the ban with the keyboard, and both gateways let
// the address through again.
func TestConsoleFedByGateways(t *testing.T) {
	rs := redistest.New(t)
	xds := xdstest.StartControlPlane(t)
	xds.Envoy(t, "envoy-edge-1", nil)
	xds.Envoy(t, "envoy-edge-2", nil)
	xds.WaitStatus(t, "both nodes SYNCED", func(s serve.Status) bool {
		if len(s.Nodes) != 2 {
			return false
		}
		for _, n := range s.Nodes {
			for typ, v := range s.Groups[0].Versions {
				if n.Acked[typ] != v {
					return false
				}
			}
		}
		return true
	})

	// The server, its console over TLS for the browser, its ingest on
	// loopback HTTP for the gateways' sinks.
	srvCfg := server.Config{DataDir: t.TempDir(), BanStore: rs.URL(), XDSStatus: []string{xds.StatusURL}, XDSStatusTokenFile: xds.TokenFile}
	s, err := server.Open(context.Background(), srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	bg, stopBG := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() { s.Run(bg); close(bgDone) }()
	t.Cleanup(func() { stopBG(); <-bgDone })
	consoleSrv := httptest.NewTLSServer(s.Handler())
	t.Cleanup(consoleSrv.Close)
	ingest := httptest.NewServer(s.Handler())
	t.Cleanup(ingest.Close)
	gatewayToken, _, err := s.Tokens().Create(context.Background(), "gateways", []auth.Scope{auth.ScopeEventsWrite}, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	adminToken, _, err := s.Tokens().Create(context.Background(), "ops-admin", []auth.Scope{auth.ScopeAdmin}, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "gateway.token")
	if err := os.WriteFile(tokenFile, []byte(gatewayToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// One fusion set for both gateways: defense with events, fail-safe on
	// client addresses (two refusals without a certificate ban one), the
	// shared store and, for mcc authz, its webhook sink.
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	setFile := corpus.WriteSetFile(t, "console-e2e.yaml", func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDefense), true
		sc.FailSafe = &fusion.FailSafe{Threshold: 20, Duration: fusion.Duration(time.Hour), Subjects: []string{"address"}}
	})
	appendFile(t, setFile, fmt.Sprintf(`store: %s
sinks:
  - type: webhook
    url: %s/v1/events
    header:
      Authorization: "Bearer {file.%s}"
    spool_dir: %s
    min_backoff: 20ms
    max_backoff: 200ms
`, rs.URL(), ingest.URL, tokenFile, filepath.Join(dir, "authz-spool")))

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get(fusion.HeaderReason)+"|"+r.Header.Get(fusion.HeaderEvent))
	}))
	t.Cleanup(up.Close)
	srv := newServerTLS(t)
	loadCaddyFeedingServer(t, srv, setFile, strings.TrimPrefix(up.URL, "http://"), rs.URL(),
		ingest.URL+"/v1/events", tokenFile, filepath.Join(dir, "caddy-spool"))
	check := startAuthzFeedingServer(t, setFile)

	// Traffic: two requests without a certificate from 203.0.113.50
	// through Caddy (the second bans the address in the shared store),
	// one through mcc authz from 198.51.100.7, and a good one.
	const banned = "203.0.113.50"
	noCert := corpus.Case(t, "no_cert")
	valid := corpus.Case(t, "valid")
	for i := 0; i < 2; i++ {
		if got := cloneViaCaddy(t, srv, noCert, banned, fmt.Sprint("console-dev-", i)); got.reason != threat.ReasonNoClientCert {
			t.Fatalf("Caddy, no certificate: %+v", got)
		}
	}
	if got := cloneViaEnvoy(t, check, corpus.SetID, noCert, "198.51.100.7", "console-dev-9", 1); got.reason != threat.ReasonNoClientCert {
		t.Fatalf("mcc authz, no certificate: %+v", got)
	}
	if got := cloneViaCaddy(t, srv, valid, banned, "console-dev-3"); got.reason != threat.ReasonFailSafeActive {
		t.Fatalf("Caddy, the banned address with a good certificate: %+v, want FAIL_SAFE_ACTIVE", got)
	}
	if got := cloneViaEnvoy(t, check, corpus.SetID, valid, banned, "console-dev-4", 2); got.reason != threat.ReasonFailSafeActive {
		t.Fatalf("mcc authz, the banned address (shared store): %+v, want FAIL_SAFE_ACTIVE", got)
	}

	// Every event the gateways made reaches the server.
	var stored []threat.Event
	deadline := time.Now().Add(timeout)
	for {
		stored = serverEvents(t, consoleSrv, adminToken)
		byGateway := map[string]int{}
		for _, e := range stored {
			byGateway[e.Gateway+"/"+e.Node]++
		}
		if byGateway["caddy/caddy-edge-1"] >= 3 && byGateway["envoy/authz-a"] >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %v", byGateway)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx := browsertest.Start(t)
	shots := browsertest.ScreenshotDir(t)
	consoleMessages := browsertest.Console(t, ctx)
	browsertest.Do(t, ctx, chromedp.Navigate(consoleSrv.URL+"/console/signin"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken+"\r"))
	browsertest.WaitFor(t, ctx, `location.pathname === "/console/overview"`, 10*time.Second, "the sign-in")

	// Overview and offenders: what the gateways sent, counted and ranked.
	browsertest.Do(t, ctx, chromedp.Navigate(consoleSrv.URL+"/console/overview?range=1h"))
	if got := browsertest.Eval(t, ctx, `document.getElementById("total").textContent`); got != fmt.Sprint(len(stored)) {
		t.Errorf("overview total %s, want the %d events the gateways sent", got, len(stored))
	}
	browsertest.Do(t, ctx, chromedp.Navigate(consoleSrv.URL+"/console/offenders?range=1h&kind=address"))
	if got := browsertest.Eval(t, ctx, `document.querySelector("table.offenders tbody tr td").textContent`); got != banned {
		t.Errorf("the top offending address is %q, want %s (its refusals at Caddy and mcc authz)", got, banned)
	}

	// Gateways: both instances, with the version their sinks announced,
	// and both Envoy nodes current.
	browsertest.Do(t, ctx, chromedp.Navigate(consoleSrv.URL+"/console/gateways"))
	for _, sel := range []string{`tr[data-gateway="caddy"][data-node="caddy-edge-1"]`, `tr[data-gateway="envoy"][data-node="authz-a"]`} {
		if got := browsertest.Eval(t, ctx, `(document.querySelector('`+sel+` td.agent') || {}).textContent || ""`); !strings.HasPrefix(got, "mcc-webhook/1 mcc/") {
			t.Errorf("%s: version %q", sel, got)
		}
	}
	for _, id := range []string{"envoy-edge-1", "envoy-edge-2"} {
		if got := browsertest.Eval(t, ctx, `(document.querySelector('tr[data-node="`+id+`"]') || {dataset: {}}).dataset.state || ""`); got != "SYNCED" {
			t.Errorf("Envoy node %s: %q, want SYNCED", id, got)
		}
	}
	browsertest.TabReachesAll(t, ctx, "gateways")
	browsertest.Shot(t, ctx, shots, "gateways")

	// Events: every stored event is a row of the events view.
	browsertest.Do(t, ctx, chromedp.Navigate(consoleSrv.URL+"/console/events?range=1h"))
	for _, e := range stored {
		if browsertest.Eval(t, ctx, fmt.Sprintf(`String(!!document.querySelector('tr[data-id="%s"]'))`, e.ID)) != "true" {
			t.Errorf("event %s (%s from %s) is not on the events view", e.ID, e.ReasonCode, e.Node)
		}
	}

	// Bans: the address is banned; Lift, with the keyboard.
	browsertest.Do(t, ctx, chromedp.Navigate(consoleSrv.URL+"/console/bans"))
	row := fmt.Sprintf(`tr[data-ban^="address:%s"]`, banned)
	if browsertest.Eval(t, ctx, `String(!!document.querySelector('`+row+`'))`) != "true" {
		t.Fatalf("the bans view does not show %s:\n%s", banned, browsertest.Eval(t, ctx, `document.querySelector("main").innerText`))
	}
	browsertest.Shot(t, ctx, shots, "bans-from-gateways")
	browsertest.Do(t, ctx, chromedp.Focus(chromedp.CSS(row+` button`)), chromedp.KeyEvent("\r"))
	browsertest.WaitFor(t, ctx, `!!document.querySelector(".notice")`, 10*time.Second, "the lift's notice")
	if browsertest.Eval(t, ctx, `String(!!document.querySelector('`+row+`'))`) != "false" {
		t.Fatal("the ban is still listed after the lift")
	}
	for _, m := range consoleMessages() {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
			t.Errorf("console %s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line)
		}
	}
	// Both gateways let the address through from their next request.
	if got := cloneViaCaddy(t, srv, valid, banned, "console-dev-5"); got.action != "allow" {
		t.Errorf("Caddy after the lift: %+v, want allowed", got)
	}
	if got := cloneViaEnvoy(t, check, corpus.SetID, valid, banned, "console-dev-6", 3); got.action != "allow" {
		t.Errorf("mcc authz after the lift: %+v, want allowed", got)
	}
}

// appendFile adds text at the end of the file at path.
func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// serverEvents reads up to 500 events from the server's API.
func serverEvents(t *testing.T, ts *httptest.Server, token string) []threat.Event {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/events?limit=500", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Items []threat.Event `json:"items"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /v1/events: %d %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return page.Items
}

// loadCaddyFeedingServer starts Caddy with the fusion set file, the shared
// Redis store and a webhook sink to the server's ingest, the token read
// from tokenFile by a placeholder.
func loadCaddyFeedingServer(t *testing.T, srv serverTLS, setFile, upstream, storeURL, ingestURL, tokenFile, spool string) {
	t.Helper()
	loadCaddyMCC(t, srv, setFile, upstream, fmt.Sprintf(`store redis %s
		sink webhook %s {
			header Authorization "Bearer {file.%s}"
			spool_dir %s
			min_backoff 20ms
			max_backoff 200ms
		}
		node caddy-edge-1`, storeURL, ingestURL, tokenFile, spool))
}

// startAuthzFeedingServer runs mcc authz as `mcc authz` does: the store
// and the sinks from the fusion set file, node authz-a.
func startAuthzFeedingServer(t *testing.T, setFile string) authv3.AuthorizationClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := fusion.LoadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	log := zap.NewNop()
	store, err := storeurl.Open(ctx, cfg.StoreURL(), log)
	if err != nil {
		t.Fatal(err)
	}
	sinks, err := cfg.OpenSinks(ctx, log)
	if err != nil || len(sinks) != 1 {
		t.Fatalf("the set file's sinks: %d, %v", len(sinks), err)
	}
	pipeline := threat.NewPipeline(threat.PipelineOptions{Sinks: sinks, Logger: log})
	proxies, err := envoyext.ParseTrustedProxies(strings.Join(trustedRanges, ","))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = pipeline.Close(cctx)
		_ = store.Close()
	})
	return startAuthzWith(t, envoyext.Options{Config: cfg, Store: store, StoreName: "redis", Pipeline: pipeline,
		Node: "authz-a", TrustedProxies: proxies})
}
