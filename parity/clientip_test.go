package parity

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// trustedRanges are the proxies both gateways trust: the test client's own
// loopback address (it plays the proxy in front of the gateway) and a
// private range for the hops it claims to have come through.
var trustedRanges = []string{"127.0.0.1/32", "10.0.0.0/8"}

// TestParityClientAddress sends the same X-Forwarded-For headers through a
// real Caddy (trusted_proxies, not strict) and through Check, and compares
// the clientIP of the threat event each gateway writes. Both must take the
// right-most address that is not a trusted proxy. Caddy's own client_ip
// takes the LEFT-most address, which the client writes: before the shared
// rule, "forged left entry" gave 6.6.6.6 in Caddy and 203.0.113.9 in Envoy.
func TestParityClientAddress(t *testing.T) {
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	srv := newServerTLS(t)
	// The backend reports the client address of the event the gateway
	// passed on (detection mode).
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, err := eventClientIP(r.Header.Get(fusion.HeaderEvent))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "clientIP="+ip)
	}))
	defer up.Close()
	file := corpus.WriteSetFile(t, "parity-clientip.yaml", func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDetection), true
	})

	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	persist_config off
	log default {
		level ERROR
	}
	servers {
		trusted_proxies static %s
	}
	mcc {
		fusion_sets %s
		sink file %s
		node parity
	}
}
%s:%d {
	tls %s %s {
		client_auth {
			mode request
		}
	}
	fusion_set bank-prod
	reverse_proxy %s
}
`, adminPort, httpPort, httpsPort, strings.Join(trustedRanges, " "), file, filepath.Join(t.TempDir(), "events.jsonl"),
		siteHost, httpsPort, srv.CertFile, srv.KeyFile, strings.TrimPrefix(up.URL, "http://"))
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: timeout, TestRequestTimeout: timeout,
	}).InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.Fatalf("loading the Caddyfile failed:\n%s", cfg)
	}
	check := startAuthzTrusting(t, file, strings.Join(trustedRanges, ","))

	cases := []struct {
		name string
		xff  []string // header lines, in order
		want string
	}{
		{"no header", nil, "127.0.0.1"},
		{"one hop", []string{"203.0.113.9"}, "203.0.113.9"},
		{"forged left entry", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"through a trusted hop", []string{"6.6.6.6, 203.0.113.9, 10.0.0.5"}, "203.0.113.9"},
		{"two header lines", []string{"6.6.6.6", "203.0.113.9, 10.0.0.5"}, "203.0.113.9"},
		{"every hop trusted", []string{"10.0.0.7, 10.0.0.5"}, "10.0.0.7"},
		{"malformed entry stops the walk", []string{"6.6.6.6, junk, 10.0.0.5"}, "10.0.0.5"},
		{"malformed next to the peer", []string{"6.6.6.6, unknown"}, "127.0.0.1"},
		{"ports and IPv6", []string{"6.6.6.6, [2001:db8::9]:4711, 10.0.0.5:80"}, "2001:db8::9"},
	}
	for i, c := range cases {
		caddyIP, err := caddyClientIP(srv, c.xff)
		if err != nil {
			t.Errorf("%s: Caddy: %v", c.name, err)
			continue
		}
		envoyIP := envoyClientIP(t, check, corpus.SetID, c.xff, i)
		if caddyIP != envoyIP {
			t.Errorf("%s: Caddy says %s, Envoy says %s", c.name, caddyIP, envoyIP)
		}
		if caddyIP != c.want {
			t.Errorf("%s: Caddy says %s, want %s", c.name, caddyIP, c.want)
		}
		if envoyIP != c.want {
			t.Errorf("%s: Envoy says %s, want %s", c.name, envoyIP, c.want)
		}
	}
}

// eventClientIP decodes the clientIP of an Mcc-Threat-Event header.
func eventClientIP(h string) (string, error) {
	if h == "" {
		return "", fmt.Errorf("no %s header", fusion.HeaderEvent)
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", fmt.Errorf("decoding %s: %w", fusion.HeaderEvent, err)
	}
	var ev threat.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return "", fmt.Errorf("decoding the event: %w", err)
	}
	return ev.ClientIP, nil
}

// caddyClientIP sends a request without a client certificate (a finding, so
// an event) from 127.0.0.1 with the given X-Forwarded-For lines.
func caddyClientIP(srv serverTLS, xff []string) (string, error) {
	dialer := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)))
		},
		TLSClientConfig:     &tls.Config{RootCAs: srv.Roots, ServerName: siteHost, MinVersion: tls.VersionTLS12},
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d/v1/balance", siteHost, httpsPort), nil)
	if err != nil {
		return "", err
	}
	for _, line := range xff {
		req.Header.Add("X-Forwarded-For", line)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	ip, ok := strings.CutPrefix(string(b), "clientIP=")
	if resp.StatusCode != http.StatusOK || !ok {
		return "", fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return ip, nil
}

// envoyClientIP sends the same request to Check as Envoy would: the peer is
// 127.0.0.1, and Envoy hands ext_authz a header sent on several lines as
// one value joined with commas.
func envoyClientIP(t *testing.T, client authv3.AuthorizationClient, setID string, xff []string, i int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	headers := map[string]string{"accept": "application/json"}
	if len(xff) > 0 {
		headers["x-forwarded-for"] = strings.Join(xff, ",")
	}
	resp, err := client.Check(ctx, envoytest.CheckRequest(envoytest.Check{
		FusionSet:  setID,
		SourceAddr: fmt.Sprintf("127.0.0.1:%d", 41000+i),
		DestAddr:   "127.0.0.1:" + strconv.Itoa(httpsPort),
		SNI:        siteHost,
		Host:       siteHost,
		Method:     http.MethodGet,
		Path:       "/v1/balance",
		RequestID:  fmt.Sprintf("clientip-%d", i),
		Headers:    headers,
	}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check denied in detection mode: %v", resp.GetStatus())
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), fusion.HeaderEvent) {
			ip, err := eventClientIP(h.GetHeader().GetValue())
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			return ip
		}
	}
	t.Fatalf("Check passed no %s header", fusion.HeaderEvent)
	return ""
}

// startAuthzTrusting is startAuthz with trusted proxies (--trusted-proxies).
func startAuthzTrusting(t *testing.T, setFile, trusted string) authv3.AuthorizationClient {
	t.Helper()
	cfg, err := fusion.LoadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	proxies, err := envoyext.ParseTrustedProxies(trusted)
	if err != nil {
		t.Fatal(err)
	}
	return startAuthzWith(t, envoyext.Options{Config: cfg, Node: "parity", TrustedProxies: proxies})
}
