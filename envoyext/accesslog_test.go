package envoyext

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/threat"
)

func failSafeYAML(caFile string) string {
	return fmt.Sprintf(`fusion_sets:
  - id: bank
    trusted_ca: {file: %q}
    app_id: bank-app
    mode: detection
    threat_events: true
    fail_safe: {threshold: 60, window: 10m, duration: 10m}
`, caFile)
}

func goodCheck(p *testPKI, ip, requestID string) *authv3.CheckRequest {
	return envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", LeafDER: p.good.Raw,
		SourceAddr: ip + ":40000", DestAddr: "192.0.2.1:443",
		SNI: "api.bank.example", Host: "api.bank.example", Method: "GET", Path: "/accounts?token=secret",
		RequestID: requestID,
	})
}

// A bot that keeps failing the handshake is scored from the access log,
// crosses the fail-safe threshold and is then denied at Check, in detection
// mode too; another address is not affected.
func TestHandshakeFloodBansAtCheck(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	h := startHarness(t, p.loadConfig(t, failSafeYAML(p.caFile())), nil)
	const bot, other = "203.0.113.66", "203.0.113.77"

	if resp := h.check(goodCheck(p, bot, "before-flood")); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("before the flood the bot's good certificate must pass, got %v", resp.GetStatus())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := h.als.StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failure := func(port int) *envoytest.Connection {
		return &envoytest.Connection{RemoteAddr: fmt.Sprintf("%s:%d", bot, port), LocalAddr: "192.0.2.1:443",
			SNI: "api.bank.example", FailureReason: envoytest.HandshakeFailure}
	}
	// First message carries the identifier, with a clean close (not scored)
	// and one failure; the rest come without identifier, as Envoy sends them.
	first := envoytest.TCPLogs("envoy-1", HandshakeLogName,
		envoytest.TCPEntry(envoytest.Connection{RemoteAddr: other + ":1", LocalAddr: "192.0.2.1:443", SNI: "api.bank.example"}),
		envoytest.TCPEntry(*failure(50001)))
	if err := stream.Send(first); err != nil {
		t.Fatal(err)
	}
	const flood = 9
	for i := 2; i <= flood; i++ {
		if err := stream.Send(envoytest.TCPLogs("", "", envoytest.TCPEntry(*failure(50000 + i)))); err != nil {
			t.Fatal(err)
		}
	}
	// CloseAndRecv returns once the server has read and scored every entry.
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}

	resp := h.check(goodCheck(p, bot, "after-flood"))
	if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("after the flood the bot must be denied, got %v", resp.GetStatus())
	}
	if got := resp.GetStatus().GetMessage(); got != string(threat.ReasonFailSafeActive) {
		t.Fatalf("deny reason %q, want FAIL_SAFE_ACTIVE", got)
	}
	if code := resp.GetDeniedResponse().GetStatus().GetCode(); int(code) != 403 {
		t.Fatalf("denied HTTP status %d, want 403", code)
	}
	if resp := h.check(goodCheck(p, other, "other-ip")); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("another address must still pass, got %v", resp.GetStatus())
	}

	m := h.metrics()
	for series, want := range map[string]string{
		`mcc_authz_access_log_entries_total{kind="tcp"}`:                                        "10",
		`mcc_authz_handshake_failures_total{fusion_set="bank"}`:                                 "9",
		`mcc_authz_decisions_total{action="block",fusion_set="bank",reason="FAIL_SAFE_ACTIVE"}`: "1",
		`mcc_authz_decisions_total{action="allow",fusion_set="bank",reason="none"}`:             "2",
	} {
		if !hasMetric(m, series, want) {
			t.Errorf("metrics lack %s %s", series, want)
		}
	}

	// Failures scored until the ban; once banned, the engine reports the
	// bot's further handshakes as FAIL_SAFE_ACTIVE.
	var handshakes, whileBanned []*threat.Event
	var banned *threat.Event
	for _, e := range h.events() {
		switch {
		case e.ReasonCode == threat.ReasonHandshakeFailed:
			handshakes = append(handshakes, e)
		case e.ReasonCode == threat.ReasonFailSafeActive && e.ExternalID == "after-flood":
			banned = e
		case e.ReasonCode == threat.ReasonFailSafeActive:
			whileBanned = append(whileBanned, e)
		default:
			t.Errorf("unexpected event %s for %s", e.ReasonCode, e.ClientIP)
		}
	}
	// 60 / 20 = 3 failures reach the threshold.
	if len(handshakes) != 3 || len(whileBanned) != flood-3 {
		t.Fatalf("%d HANDSHAKE_FAILED and %d FAIL_SAFE_ACTIVE events from the access log, want 3 and %d", len(handshakes), len(whileBanned), flood-3)
	}
	for _, e := range whileBanned {
		if e.ClientIP != bot || !e.FailSafeEnforce {
			t.Errorf("event while banned: ip=%q enforce=%v", e.ClientIP, e.FailSafeEnforce)
		}
	}
	maxScore, enforced := 0, false
	for _, e := range handshakes {
		if e.ClientIP != bot || e.Gateway != threat.GatewayEnvoy || e.FusionSet != "bank" || e.SNI != "api.bank.example" {
			t.Errorf("handshake event context wrong: ip=%q gw=%q set=%q sni=%q", e.ClientIP, e.Gateway, e.FusionSet, e.SNI)
		}
		if e.ReasonData["failureReason"] != envoytest.HandshakeFailure || e.ReasonData["cause"] != string(threat.ReasonNoClientCert) {
			t.Errorf("reasonData = %v", e.ReasonData)
		}
		if a, _ := e.ReasonData["downstreamRemoteAddress"].(string); !strings.HasPrefix(a, bot+":") {
			t.Errorf("reasonData lacks the downstream address: %v", e.ReasonData)
		}
		if e.ReasonData["envoyNode"] != "envoy-1" || e.ReasonData["logName"] != HandshakeLogName {
			t.Errorf("reasonData lacks the Envoy node or log name: %v", e.ReasonData)
		}
		if e.ReasonData["downstreamLocalAddress"] != "192.0.2.1:443" {
			t.Errorf("reasonData lacks the local address: %v", e.ReasonData)
		}
		if e.CurrentThreatEventScore != threat.DefaultScores[threat.ReasonHandshakeFailed] {
			t.Errorf("currentThreatEventScore %d", e.CurrentThreatEventScore)
		}
		maxScore = max(maxScore, e.ThreatEventsScore)
		enforced = enforced || e.FailSafeEnforce
	}
	if maxScore < 60 || !enforced {
		t.Errorf("the flood never crossed the threshold: max score %d, enforced %v", maxScore, enforced)
	}
	if banned == nil || banned.ClientIP != bot || banned.Action != threat.ActionBlocked || banned.ExternalID != "after-flood" {
		t.Fatalf("FAIL_SAFE_ACTIVE event missing or wrong: %+v", banned)
	}
}

// Handshake failures go to the fusion set chosen by SNI routes, then the
// default; with several sets and no rule they are counted, not scored.
func TestHandshakeRouting(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	yaml := fmt.Sprintf(`fusion_sets:
  - id: bank
    trusted_ca: {file: %[1]q}
    app_id: bank-app
    mode: defense
    threat_events: true
  - id: shop
    trusted_ca: {file: %[1]q}
    app_id: shop-app
    mode: defense
    threat_events: true
`, p.caFile())
	cfg := p.loadConfig(t, yaml)

	send := func(h *harness, conns ...envoytest.Connection) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stream, err := h.als.StreamAccessLogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range conns {
			node := ""
			if i == 0 {
				node = "envoy-1"
			}
			if err := stream.Send(envoytest.TCPLogs(node, HandshakeLogName, envoytest.TCPEntry(c))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	conn := func(sni string, tags map[string]string) envoytest.Connection {
		return envoytest.Connection{RemoteAddr: "198.51.100.5:1234", LocalAddr: "192.0.2.1:443", SNI: sni, FailureReason: "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end", CustomTags: tags}
	}

	t.Run("sni and default", func(t *testing.T) {
		h := startHarness(t, cfg, func(o *Options) {
			o.SNIRoutes = map[string]string{"*.shop.example": "shop"}
			o.HandshakeFusionSet = "bank"
		})
		send(h, conn("m.shop.example", nil), conn("api.bank.example", nil), conn("x.example", map[string]string{"fusion_set": "shop"}))
		got := map[string]int{}
		for _, e := range h.events() {
			got[e.FusionSet+"/"+e.ReasonData["routedBy"].(string)]++
			if e.ReasonData["cause"] != string(threat.ReasonCertUntrusted) {
				t.Errorf("cause = %v", e.ReasonData["cause"])
			}
		}
		want := map[string]int{"shop/sni": 1, "bank/default": 1, "shop/custom_tag": 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("routed %v, want %v", got, want)
		}
	})
	t.Run("gateway section", func(t *testing.T) {
		writeServerCert(t, p.dir, "edge.pem", "edge-key.pem")
		// The gateway section mcc xds builds Envoy from, in the same file.
		gwCfg := p.loadConfig(t, yaml+`gateway:
  authz:
    address: 127.0.0.1:9001
  listeners:
    - name: edge
      port: 8443
      certificate: {cert_file: edge.pem, key_file: edge-key.pem}
      routes:
        - {host: api.bank.example, fusion_set: bank, upstream: api}
        - {host: "*.shop.example", fusion_set: shop, upstream: api}
  upstreams:
    - {name: api, endpoints: [127.0.0.1:8081]}
  node_groups:
    - {cluster: edge, listeners: [edge]}
`)
		if gwCfg.File.Gateway == nil {
			t.Fatal("the loaded config lost its gateway section")
		}
		h := startHarness(t, gwCfg, func(o *Options) { o.HandshakeFusionSet = "bank" })
		onPort := func(sni string, port int) envoytest.Connection {
			c := conn(sni, nil)
			c.LocalAddr = fmt.Sprintf("192.0.2.1:%d", port)
			return c
		}
		// The gateway's listener on 8443 routes by SNI; another port or
		// an unknown name falls back to the default set.
		send(h, onPort("m.shop.example", 8443), onPort("api.bank.example", 8443), onPort("m.shop.example", 9443), onPort("x.example", 8443))
		got := map[string]int{}
		for _, e := range h.events() {
			got[e.FusionSet+"/"+e.ReasonData["routedBy"].(string)]++
		}
		want := map[string]int{"shop/gateway": 1, "bank/gateway": 1, "bank/default": 2}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("routed %v, want %v", got, want)
		}
	})
	t.Run("from a trusted proxy", func(t *testing.T) {
		proxies, err := ParseTrustedProxies("198.51.100.0/24")
		if err != nil {
			t.Fatal(err)
		}
		h := startHarness(t, cfg, func(o *Options) { o.TrustedProxies = proxies; o.HandshakeFusionSet = "bank" })
		send(h, conn("api.bank.example", nil))
		if ev := h.events(); len(ev) != 0 {
			t.Fatalf("a failure from a trusted proxy must not be scored, got %d events", len(ev))
		}
		if m := h.metrics(); !hasMetric(m, `mcc_authz_handshake_failures_total{fusion_set="_trusted_proxy"}`, "1") {
			t.Fatalf("trusted-proxy failure not counted")
		}
	})
	t.Run("unrouted", func(t *testing.T) {
		h := startHarness(t, cfg, nil)
		send(h, conn("api.bank.example", nil))
		if ev := h.events(); len(ev) != 0 {
			t.Fatalf("an unrouted failure must not be scored, got %d events", len(ev))
		}
		if m := h.metrics(); !hasMetric(m, `mcc_authz_handshake_failures_total{fusion_set="_unrouted"}`, "1") {
			t.Fatalf("unrouted failure not counted:\n%s", m)
		}
	})
}
