package caddymod

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// Loopback addresses the tests dial from. Linux routes all of 127/8 to lo.
const (
	directIP = "127.0.0.1"
	otherIP  = "127.0.0.2"
	proxyIP  = "127.0.0.3" // the only trusted proxy
	// forwardedIP is the client a trusted proxy reports in X-Forwarded-For.
	forwardedIP = "198.51.100.7"
)

const xfccHeader = "X-Forwarded-Client-Cert"

// trustedProxiesOption makes proxyIP the server's only trusted proxy.
const trustedProxiesOption = "\tservers {\n\t\ttrusted_proxies static " + proxyIP + "/32\n\t}\n"

// tlsPresentable reports whether a case's chain can be presented in a real
// TLS handshake: crypto/tls parses every certificate the client sends and
// needs the leaf's key. The others reach the handler through the trusted
// certificate header instead.
func tlsPresentable(tc fusiontest.Case) bool {
	if len(tc.Chain) == 0 {
		return true
	}
	if tc.Key == nil {
		return false
	}
	for _, der := range tc.Chain {
		if _, err := x509.ParseCertificate(der); err != nil {
			return false
		}
	}
	return true
}

// xfccValue is an Envoy-style XFCC element carrying the chain.
func xfccValue(chain [][]byte) string {
	var pemChain strings.Builder
	for _, der := range chain {
		pemChain.WriteString(certPEM(der))
	}
	leaf := ""
	if len(chain) > 0 {
		leaf = certPEM(chain[0])
	}
	return fmt.Sprintf(`By=spiffe://proxy;Hash=00;Cert="%s";Chain="%s";Subject="CN=x,O=y";URI=`,
		url.PathEscape(leaf), url.PathEscape(pemChain.String()))
}

type corpusMode struct {
	name    string
	mode    threat.Mode
	events  bool
	status  int
	message string
}

// TestCorpusThroughHandler sends every case of the core corpus through a
// real Caddy, in each of the three modes, and checks the response, what the
// upstream got, the events in the file sink and the metrics.
func TestCorpusThroughHandler(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)

	seen := map[threat.Reason]bool{}
	for _, tc := range corp.Cases {
		seen[tc.Want] = true
	}
	for _, r := range []threat.Reason{threat.ReasonNone, threat.ReasonNoClientCert, threat.ReasonCertUntrusted,
		threat.ReasonCertExpired, threat.ReasonCertNotYetValid, threat.ReasonCertRevoked, threat.ReasonIdentityMismatch,
		threat.ReasonWeakCrypto, threat.ReasonWrongKeyUsage, threat.ReasonCertMalformed, threat.ReasonBuildBlocked} {
		if !seen[r] {
			t.Fatalf("the corpus has no case for %q", r)
		}
	}

	modes := []corpusMode{
		{name: "defense_events_off", mode: threat.ModeDefense, events: false, status: http.StatusForbidden, message: "Please update (defense, events off)."},
		{name: "detection", mode: threat.ModeDetection, events: true, message: "Please update (detection)."},
		{name: "defense_events_on", mode: threat.ModeDefense, events: true, status: 451, message: "Please update (defense, events on)."},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			setFile := corp.WriteSetFile(t, "sets-"+m.name+".yaml", func(sc *fusion.SetConfig) {
				sc.Mode = string(m.mode)
				sc.ThreatEvents = m.events
				sc.Message = m.message
				if m.status != 0 && m.status != http.StatusForbidden {
					sc.Status = m.status
				}
			})
			sink := filepath.Join(t.TempDir(), "events.jsonl")
			cfg := globalOptions() + trustedProxiesOption + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
		node caddy-test-1
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf(`	fusion_set %s {
		cert_header %s xfcc
	}
	reverse_proxy %s`, corp.SetID, xfccHeader, up.addr()))
			loadCaddyfile(t, cfg)
			runCorpusMode(t, srv, corp, up, m, sink)
		})
	}
}

func runCorpusMode(t *testing.T, srv serverTLS, corp *fusiontest.Corpus, up *upstream, m corpusMode, sink string) {
	before := scrapeMetrics(t)
	failing := 0
	blocks := map[threat.Reason]int{}
	allows := map[threat.Reason]int{}
	for i, tc := range corp.Cases {
		// Two requests per case: JSON and text block pages (and the second
		// one is served from the verdict cache).
		for _, accept := range []string{"application/json", "text/plain"} {
			testID := fmt.Sprintf("%s-%d-%s-%s", m.name, i, tc.Name, strings.Split(accept, "/")[1])
			headers := []string{
				"X-Test-Id: " + testID,
				"Accept: " + accept,
				// Forged copies of the upstream headers: never to be passed on.
				fusion.HeaderEvent + ": forged",
				fusion.HeaderReason + ": FORGED",
				fusiontest.HeaderDeviceID + ": device-" + tc.Name,
			}
			var c *client
			wantIP := directIP
			if tlsPresentable(tc) {
				var cert *tls.Certificate
				if tc.Chain != nil {
					tcert := tc.TLSCertificate()
					cert = &tcert
				}
				c = newClient(t, srv, cert, directIP)
			} else {
				c = newClient(t, srv, nil, proxyIP)
				headers = append(headers, xfccHeader+": "+xfccValue(tc.Chain), "X-Forwarded-For: "+forwardedIP)
				wantIP = forwardedIP
			}
			r := c.mustGet(t, "/account?x=1", headers...)
			if tc.Want == threat.ReasonNone {
				allows[threat.ReasonNone]++
				checkAllowed(t, up, testID, tc, r)
				continue
			}
			failing++
			if m.mode == threat.ModeDetection {
				allows[tc.Want]++
				ev := checkReported(t, up, testID, tc, r)
				checkEventFields(t, ev, corp, m, tc, wantIP)
				continue
			}
			blocks[tc.Want]++
			id := checkBlocked(t, up, testID, tc, m, corp.SetID, accept, r)
			if m.events {
				evs := waitEvents(t, sink, failing)
				ev := eventByExternalID(evs, id)
				if ev == nil {
					t.Fatalf("%s: no event with externalID %s in the file sink", tc.Name, id)
				}
				checkEventFields(t, ev, corp, m, tc, wantIP)
			}
		}
	}

	// Events: every failing request in the sink when events are on, none
	// when they are off (give the pipeline the time it needs to prove it).
	if m.events {
		evs := waitEvents(t, sink, failing)
		if len(evs) != failing {
			t.Errorf("file sink has %d events, want %d", len(evs), failing)
		}
	} else {
		// Events off: the engine must not emit, so the sink stays empty
		// (the delivered counter below is checked too).
		if evs := sinkEvents(t, sink); len(evs) != 0 {
			t.Errorf("events off: file sink has %d events, want 0", len(evs))
		}
	}

	after := scrapeMetrics(t)
	delta := func(key string) float64 { return after[key] - before[key] }
	for reason, n := range blocks {
		key := series("caddy_mcc_decisions_total", "fusion_set", corp.SetID, "action", "block", "reason", string(reason))
		if got := delta(key); got != float64(n) {
			t.Errorf("%s grew by %v, want %d", key, got, n)
		}
	}
	for reason, n := range allows {
		label := string(reason)
		if reason == threat.ReasonNone {
			label = "none"
		}
		key := series("caddy_mcc_decisions_total", "fusion_set", corp.SetID, "action", "allow", "reason", label)
		if got := delta(key); got != float64(n) {
			t.Errorf("%s grew by %v, want %d", key, got, n)
		}
	}
	if delta("caddy_mcc_cache_hits_total") <= 0 {
		t.Errorf("caddy_mcc_cache_hits_total did not grow: %v -> %v", before["caddy_mcc_cache_hits_total"], after["caddy_mcc_cache_hits_total"])
	}
	if delta("caddy_mcc_cache_misses_total") <= 0 {
		t.Errorf("caddy_mcc_cache_misses_total did not grow")
	}
	delivered := series("caddy_mcc_events_total", "sink", "file:"+sink, "result", "delivered")
	want := 0.0
	if m.events {
		want = float64(failing)
	}
	if got := after[delivered]; got != want {
		t.Errorf("%s = %v, want %v", delivered, got, want)
	}
	for _, res := range []string{"dropped", "failed"} {
		key := series("caddy_mcc_events_total", "sink", "file:"+sink, "result", res)
		if v, ok := after[key]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", key, v, ok)
		}
	}
}

// checkAllowed: the upstream answered and saw no mcc headers at all, not
// even the forged ones the client sent.
func checkAllowed(t *testing.T, up *upstream, testID string, tc fusiontest.Case, r response) {
	t.Helper()
	if r.status != http.StatusOK || r.body != "upstream ok" {
		t.Fatalf("%s: got %d %q, want 200 from the upstream", tc.Name, r.status, r.body)
	}
	h, ok := up.headers(testID)
	if !ok {
		t.Fatalf("%s: the upstream did not get the request", tc.Name)
	}
	for _, k := range []string{fusion.HeaderEvent, fusion.HeaderReason, fusion.HeaderFusionSet} {
		if v := h.Values(k); len(v) != 0 {
			t.Errorf("%s: upstream got %s: %q, want none", tc.Name, k, v)
		}
	}
}

// checkReported: detection mode passes the request on with the event.
func checkReported(t *testing.T, up *upstream, testID string, tc fusiontest.Case, r response) *threat.Event {
	t.Helper()
	if r.status != http.StatusOK || r.body != "upstream ok" {
		t.Fatalf("%s: detection mode answered %d %q, want 200 from the upstream", tc.Name, r.status, r.body)
	}
	h, ok := up.headers(testID)
	if !ok {
		t.Fatalf("%s: the upstream did not get the request", tc.Name)
	}
	if v := h.Values(fusion.HeaderReason); len(v) != 1 || v[0] != string(tc.Want) {
		t.Fatalf("%s: upstream %s = %q, want exactly [%s]", tc.Name, fusion.HeaderReason, v, tc.Want)
	}
	vals := h.Values(fusion.HeaderEvent)
	if len(vals) != 1 {
		t.Fatalf("%s: upstream %s = %q, want exactly one", tc.Name, fusion.HeaderEvent, vals)
	}
	raw, err := base64.RawURLEncoding.DecodeString(vals[0])
	if err != nil {
		t.Fatalf("%s: %s is not base64url: %v", tc.Name, fusion.HeaderEvent, err)
	}
	if err := schematest.ValidateEventJSON(raw); err != nil {
		t.Fatalf("%s: upstream event: %v\n%s", tc.Name, err, raw)
	}
	ev := new(threat.Event)
	if err := json.Unmarshal(raw, ev); err != nil {
		t.Fatal(err)
	}
	if ev.Action != threat.ActionReported {
		t.Errorf("%s: upstream event action %q, want reported", tc.Name, ev.Action)
	}
	return ev
}

// checkBlocked: defense mode answers with the block page and never calls
// the upstream. It returns the reference (externalID) the page shows.
func checkBlocked(t *testing.T, up *upstream, testID string, tc fusiontest.Case, m corpusMode, setID, accept string, r response) string {
	t.Helper()
	if r.status != m.status {
		t.Fatalf("%s: status %d (%q), want %d", tc.Name, r.status, r.body, m.status)
	}
	if _, ok := up.headers(testID); ok {
		t.Fatalf("%s: a blocked request reached the upstream", tc.Name)
	}
	if accept == "application/json" {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", tc.Name, ct)
		}
		var body struct {
			Error, Message, ReasonCode, ExternalID, FusionSet string
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Fatalf("%s: block body is not JSON: %v: %q", tc.Name, err, r.body)
		}
		if body.ReasonCode != string(tc.Want) || body.Message != m.message || body.FusionSet != setID ||
			body.ExternalID == "" || body.Error != http.StatusText(m.status) {
			t.Fatalf("%s: block body %+v, want reason %s, message %q, set %s", tc.Name, body, tc.Want, m.message, setID)
		}
		return body.ExternalID
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("%s: Content-Type %q, want text/plain", tc.Name, ct)
	}
	msg, ref, ok := strings.Cut(r.body, "\nreference: ")
	if !ok || msg != m.message || !strings.HasSuffix(ref, "\n") || len(ref) < 2 {
		t.Fatalf("%s: text block body %q, want %q + reference", tc.Name, r.body, m.message)
	}
	return strings.TrimSuffix(ref, "\n")
}

func checkEventFields(t *testing.T, ev *threat.Event, corp *fusiontest.Corpus, m corpusMode, tc fusiontest.Case, wantIP string) {
	t.Helper()
	wantAction := threat.ActionBlocked
	if m.mode == threat.ModeDetection {
		wantAction = threat.ActionReported
	}
	if ev.ReasonCode != tc.Want || ev.FusionSet != corp.SetID || ev.Mode != m.mode || ev.Action != wantAction ||
		ev.Gateway != threat.GatewayCaddy || ev.Node != "caddy-test-1" || ev.ClientIP != wantIP ||
		ev.SNI != testHost || ev.Method != http.MethodGet || ev.Path != "/account" || ev.Message != m.message ||
		ev.Name != threat.FeatureName || ev.Schema != threat.SchemaID || ev.ExternalID == "" {
		t.Errorf("%s: event %+v does not match (want reason %s, mode %s, action %s, client %s)", tc.Name, ev, tc.Want, m.mode, wantAction, wantIP)
	}
	if !strings.HasPrefix(ev.Host, testHost) {
		t.Errorf("%s: event host %q", tc.Name, ev.Host)
	}
	if got := ev.Device["deviceID"]; got != "device-"+tc.Name {
		t.Errorf("%s: event deviceID %q, want %q", tc.Name, got, "device-"+tc.Name)
	}
	if leaf := tc.Leaf(); leaf != nil && ev.Certificate != nil && ev.Certificate.Serial != leaf.SerialNumber.Text(16) {
		t.Errorf("%s: event certificate serial %s, want %s", tc.Name, ev.Certificate.Serial, leaf.SerialNumber.Text(16))
	}
}
