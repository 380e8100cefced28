package parity

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// cloneSeen is what a client and the upstream observe of one request that
// presents a genuine certificate.
type cloneSeen struct {
	action string // "allow" or "block"
	reason threat.Reason
	event  *threat.Event // passed upstream with a RATE_ANOMALY
}

// TestParityCloneDetection replays ONE genuine build certificate from many
// client addresses, each with its own device id, through a real Caddy (the
// address from X-Forwarded-For behind a trusted proxy) and through Check
// over real gRPC as Envoy calls it. Both gateways count the same uses, so
// both report RATE_ANOMALY on the same requests with the same counts; the
// requests are allowed (clone detection only reports a build certificate);
// the reported client is scored (here, to a ban: the set's threshold is one
// RATE_ANOMALY) while the certificate is not, so it still works from a
// fresh client.
func TestParityCloneDetection(t *testing.T) {
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	valid := corpus.Case(t, "valid")
	sum := sha256.Sum256(valid.Chain[0])
	validSHA := hex.EncodeToString(sum[:])
	srv := newServerTLS(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The backend echoes what the gateway passed on.
		_, _ = io.WriteString(w, r.Header.Get(fusion.HeaderReason)+"|"+r.Header.Get(fusion.HeaderEvent))
	}))
	defer up.Close()
	const maxAddrs, maxDevs = 8, 6
	file := corpus.WriteSetFile(t, "parity-clone.yaml", func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDefense), true
		sc.CloneDetection = &fusion.CloneDetection{Window: fusion.Duration(time.Hour), MaxAddresses: maxAddrs, MaxDevices: maxDevs}
		sc.FailSafe = &fusion.FailSafe{Threshold: threat.DefaultScores[threat.ReasonRateAnomaly]}
	})
	sink := filepath.Join(t.TempDir(), "caddy-events.jsonl")
	loadCaddyTrusting(t, srv, file, strings.TrimPrefix(up.URL, "http://"), sink)
	check := startAuthzTrusting(t, file, strings.Join(trustedRanges, ","))

	var reportedAt []int
	for i := 1; i <= 13; i++ {
		addr, device := fmt.Sprintf("203.0.113.%d", i), fmt.Sprintf("clone-device-%d", i)
		c := cloneViaCaddy(t, srv, valid, addr, device)
		e := cloneViaEnvoy(t, check, corpus.SetID, valid, addr, device, i)
		if c.action != "allow" || e.action != "allow" {
			t.Fatalf("use %d: Caddy %s %s, Envoy %s %s: clone detection must not block a build certificate", i, c.action, c.reason, e.action, e.reason)
		}
		if c.reason != e.reason {
			t.Errorf("use %d: Caddy reports %q, Envoy %q", i, c.reason, e.reason)
		}
		if c.reason == threat.ReasonNone {
			continue
		}
		if c.reason != threat.ReasonRateAnomaly {
			t.Fatalf("use %d: %s", i, c.reason)
		}
		reportedAt = append(reportedAt, i)
		for gw, ev := range map[string]*threat.Event{"Caddy": c.event, "Envoy": e.event} {
			if ev == nil {
				t.Fatalf("use %d: %s passed no event upstream", i, gw)
			}
			rd := ev.ReasonData
			if ev.Action != threat.ActionReported || ev.ClientIP != addr || ev.Certificate == nil || ev.Certificate.SHA256 != validSHA {
				t.Errorf("use %d at %s: action %s clientIP %s certificate %+v", i, gw, ev.Action, ev.ClientIP, ev.Certificate)
			}
			if rd["addresses"] != float64(i) || rd["devices"] != float64(i) || rd["maxAddresses"] != float64(maxAddrs) || rd["maxDevices"] != float64(maxDevs) || rd["window"] != "1h0m0s" {
				t.Errorf("use %d at %s: reasonData %v", i, gw, rd)
			}
			sample, _ := rd["sampleAddresses"].([]any)
			if len(sample) != threat.CloneSampleSize || sample[0] != "203.0.113.1" {
				t.Errorf("use %d at %s: sample %v, want the first %d addresses", i, gw, rd["sampleAddresses"], threat.CloneSampleSize)
			}
			if !ev.FailSafeEnforce || ev.CurrentThreatEventScore != threat.DefaultScores[threat.ReasonRateAnomaly] {
				t.Errorf("use %d at %s: score %d enforce %v, want the client scored to its ban", i, gw, ev.CurrentThreatEventScore, ev.FailSafeEnforce)
			}
		}
	}
	// Devices reach 6 first, addresses 8, and devices double to 12: one
	// report each, not one per request.
	if !slices.Equal(reportedAt, []int{maxDevs, maxAddrs, 2 * maxDevs}) {
		t.Errorf("reported at uses %v, want %v", reportedAt, []int{maxDevs, maxAddrs, 2 * maxDevs})
	}

	// The reported client is banned at both gateways...
	addr8 := fmt.Sprintf("203.0.113.%d", maxAddrs)
	c := cloneViaCaddy(t, srv, valid, addr8, "clone-device-fresh")
	e := cloneViaEnvoy(t, check, corpus.SetID, valid, addr8, "clone-device-fresh", 100)
	if c.action != "block" || c.reason != threat.ReasonFailSafeActive || e.action != "block" || e.reason != threat.ReasonFailSafeActive {
		t.Errorf("the reported address again: Caddy %s %s, Envoy %s %s; want FAIL_SAFE_ACTIVE at both", c.action, c.reason, e.action, e.reason)
	}
	// ...and the certificate is not: a fresh client still gets through.
	c = cloneViaCaddy(t, srv, valid, "198.51.100.200", "clone-device-new")
	e = cloneViaEnvoy(t, check, corpus.SetID, valid, "198.51.100.200", "clone-device-new", 101)
	if c.action != "allow" || e.action != "allow" {
		t.Errorf("the certificate from a fresh client: Caddy %s %s, Envoy %s %s; want allowed", c.action, c.reason, e.action, e.reason)
	}

	// Caddy's sink got the three reports.
	deadline := time.Now().Add(timeout)
	for {
		n := countReasons(t, sink, threat.ReasonRateAnomaly)
		if n == len(reportedAt) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Caddy's sink holds %d RATE_ANOMALY events, want %d", n, len(reportedAt))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loadCaddyTrusting loads a Caddyfile guarding the site with the set file,
// trusting the test client (and 10/8) as proxies so that X-Forwarded-For
// names the client, events to the file sink sink.
func loadCaddyTrusting(t *testing.T, srv serverTLS, setFile, upstream, sink string) {
	t.Helper()
	loadCaddyMCC(t, srv, setFile, upstream, "sink file "+sink+"\n\t\tnode parity")
}

// loadCaddyMCC loads the parity Caddyfile: the site guarded by fusion set
// bank-prod of setFile behind the test's trusted proxies, with mccLines
// (sinks, store, node) in the global mcc block.
func loadCaddyMCC(t *testing.T, srv serverTLS, setFile, upstream, mccLines string) {
	t.Helper()
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
		%s
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
`, adminPort, httpPort, httpsPort, strings.Join(trustedRanges, " "), setFile, mccLines, siteHost, httpsPort, srv.CertFile, srv.KeyFile, upstream)
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: timeout, TestRequestTimeout: timeout,
	}).InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.Fatalf("loading the Caddyfile failed:\n%s", cfg)
	}
}

// cloneViaCaddy presents tc's certificate to Caddy from 127.0.0.1 as a
// proxy for addr, with the device id header.
func cloneViaCaddy(t *testing.T, srv serverTLS, tc fusiontest.Case, addr, device string) cloneSeen {
	t.Helper()
	cert := tc.TLSCertificate()
	dialer := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)))
		},
		TLSClientConfig: &tls.Config{RootCAs: srv.Roots, ServerName: siteHost, MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }},
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d/v1/balance", siteHost, httpsPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	req.Header.Set(fusiontest.HeaderDeviceID, device)
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		t.Fatalf("Caddy: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		v := blockVerdict(t, "Caddy", resp.StatusCode, string(b))
		return cloneSeen{action: "block", reason: v.Reason}
	}
	reason, event, _ := strings.Cut(string(b), "|")
	return cloneSeen{action: "allow", reason: threat.Reason(reason), event: decodeEventHeader(t, event)}
}

// cloneViaEnvoy sends the same use to Check as Envoy would: the peer is
// 127.0.0.1, the client address in x-forwarded-for.
func cloneViaEnvoy(t *testing.T, client authv3.AuthorizationClient, setID string, tc fusiontest.Case, addr, device string, i int) cloneSeen {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := client.Check(ctx, envoytest.CheckRequest(envoytest.Check{
		FusionSet:  setID,
		Chain:      tc.Chain,
		SourceAddr: fmt.Sprintf("127.0.0.1:%d", 42000+i),
		DestAddr:   "127.0.0.1:" + strconv.Itoa(httpsPort),
		SNI:        siteHost,
		Host:       siteHost,
		Method:     http.MethodGet,
		Path:       "/v1/balance",
		RequestID:  fmt.Sprintf("clone-%d", i),
		Headers: map[string]string{
			"accept":                  "application/json",
			"x-forwarded-for":         addr,
			fusiontest.HeaderDeviceID: device,
		},
	}))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		d := resp.GetDeniedResponse()
		v := blockVerdict(t, "Envoy", int(d.GetStatus().GetCode()), d.GetBody())
		return cloneSeen{action: "block", reason: v.Reason}
	}
	seen := cloneSeen{action: "allow"}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		switch {
		case strings.EqualFold(h.GetHeader().GetKey(), fusion.HeaderReason):
			seen.reason = threat.Reason(h.GetHeader().GetValue())
		case strings.EqualFold(h.GetHeader().GetKey(), fusion.HeaderEvent):
			seen.event = decodeEventHeader(t, h.GetHeader().GetValue())
		}
	}
	return seen
}

// decodeEventHeader decodes an Mcc-Threat-Event value; nil when empty.
func decodeEventHeader(t *testing.T, h string) *threat.Event {
	t.Helper()
	if h == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("decoding %s: %v", fusion.HeaderEvent, err)
	}
	var ev threat.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("decoding the event: %v", err)
	}
	return &ev
}

// countReasons counts the events of reason r in a JSON-lines sink file.
func countReasons(t *testing.T, path string, r threat.Reason) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		var ev struct {
			ReasonCode threat.Reason `json:"reasonCode"`
		}
		if line != "" && json.Unmarshal([]byte(line), &ev) == nil && ev.ReasonCode == r {
			n++
		}
	}
	return n
}
