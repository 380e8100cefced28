package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/mccgate/mcc/caddymod" // the mcc app and the fusion_set handler
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/caddytesting"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// upstreamBody is what the backend behind Caddy answers.
const upstreamBody = "upstream ok"

// caddyGateway is the in-process Caddy, guarding siteHost with the fusion
// set, scoring in Redis.
type caddyGateway struct {
	roots *x509.CertPool // trusts the site certificate
	sink  string         // the mcc app's file sink
}

// caddyfile is the fleet's Caddy configuration: the fusion set file shared
// with `mcc authz`, the shared Redis store, a file sink, and a site that asks
// for a client certificate and leaves every decision to fusion_set.
const caddyfile = `{
	admin localhost:%[1]d
	http_port %[2]d
	https_port %[3]d
	grace_period 1ns
	skip_install_trust
	persist_config off
	log default {
		level ERROR
	}
	mcc {
		fusion_sets %[4]s
		store redis %[5]s
		sink file %[6]s
		node caddy-1
	}
}
%[7]s:%[3]d {
	tls %[8]s %[9]s {
		client_auth {
			mode request
		}
	}
	fusion_set %[10]s
	reverse_proxy %[11]s
}
`

// startCaddy loads the fleet's Caddyfile into the in-process Caddy. When
// the test ends, a config without the mcc app is loaded, so that the mcc
// app lets go of its store before Redis is stopped and the next test starts
// with no scores.
func startCaddy(t *testing.T, setFile, redisURL, sink string) *caddyGateway {
	t.Helper()
	site := newSiteCert(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, upstreamBody)
	}))
	t.Cleanup(up.Close)

	cfg := fmt.Sprintf(caddyfile, adminPort, httpPort, httpsPort, setFile, redisURL, sink,
		siteHost, site.CertFile, site.KeyFile, setID, strings.TrimPrefix(up.URL, "http://"))
	// Registered first so that it runs last, after caddytest has shown
	// the running config of a failed test.
	t.Cleanup(func() { unloadMCC(t) })
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: timeout, TestRequestTimeout: timeout,
	})
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.Fatalf("loading the Caddyfile failed:\n%s", cfg)
	}
	return &caddyGateway{roots: site.Roots, sink: sink}
}

// unloadMCC loads a config without the mcc app: its store, engine and
// pipeline are released.
func unloadMCC(t *testing.T) {
	t.Helper()
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	persist_config off
	auto_https off
}
`, adminPort, httpPort, httpsPort)
	admin := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var resp *http.Response
		resp, err = admin.Post(fmt.Sprintf("http://localhost:%d/load", adminPort), "text/caddyfile", strings.NewReader(cfg))
		if err != nil {
			// A load replaces the admin listener; a request that met the
			// old one going away is sent again.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			break
		}
		return
	}
	t.Errorf("unloading the mcc app: %v", err)
}

func (g *caddyGateway) name() string { return threat.GatewayCaddy }

// request makes one HTTPS request on a new connection from c.ip, so the
// certificate is presented in a real handshake and Caddy's client_ip is
// c.ip.
func (g *caddyGateway) request(ctx context.Context, c client, tc fusiontest.Case) (verdict, error) {
	dialer := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.ip)}}
	tlsCfg := &tls.Config{RootCAs: g.roots, ServerName: siteHost, MinVersion: tls.VersionTLS12}
	if len(tc.Chain) > 0 {
		cert := tc.TLSCertificate()
		// Present the chain whatever CAs the server names: most test
		// certificates come from CAs it does not trust.
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)))
		},
		TLSClientConfig:     tlsCfg,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s:%d%s", siteHost, httpsPort, sitePath), nil)
	if err != nil {
		return verdict{}, err
	}
	req.Header.Set("Accept", "application/json")
	if c.device != "" {
		req.Header.Set(fusiontest.HeaderDeviceID, c.device)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		return verdict{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return verdict{}, fmt.Errorf("reading the response: %w", err)
	}
	if resp.StatusCode == http.StatusOK && string(body) == upstreamBody {
		return verdict{Allowed: true}, nil
	}
	if resp.StatusCode >= 500 {
		return verdict{}, fmt.Errorf("status %d: %q", resp.StatusCode, body)
	}
	return parseBlockPage(resp.StatusCode, body)
}

// parseBlockPage reads the JSON block page both gateways render.
func parseBlockPage(status int, body []byte) (verdict, error) {
	var page struct {
		ReasonCode string `json:"reasonCode"`
		ExternalID string `json:"externalID"`
	}
	if err := json.Unmarshal(body, &page); err != nil || page.ReasonCode == "" {
		return verdict{}, fmt.Errorf("status %d with a body that is not a block page: %q", status, body)
	}
	return verdict{Status: status, Reason: threat.Reason(page.ReasonCode), ExternalID: page.ExternalID}, nil
}

func (g *caddyGateway) events(t *testing.T) []*threat.Event { return readSink(t, g.sink) }

// storeErrors reads caddy_mcc_store_errors_total from Caddy's /metrics.
func (g *caddyGateway) storeErrors(t *testing.T) float64 {
	t.Helper()
	admin := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := admin.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	const name = "caddy_mcc_store_errors_total "
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s%s: %v", name, v, err)
			}
			return n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	t.Fatalf("/metrics has no %s", strings.TrimSpace(name))
	return 0
}

// readSink reads a file sink's complete lines, each checked against the
// event schema. A missing file holds no events yet.
func readSink(t *testing.T, path string) []*threat.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading the event sink: %v", err)
	}
	// The sink may be writing a line right now: only complete lines count.
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var out []*threat.Event
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if err := schematest.ValidateEventJSON(line); err != nil {
			t.Fatalf("%s line %d does not match the event schema: %v\n%s", filepath.Base(path), i+1, err, line)
		}
		e := new(threat.Event)
		if err := json.Unmarshal(line, e); err != nil {
			t.Fatalf("%s line %d: %v", filepath.Base(path), i+1, err)
		}
		out = append(out, e)
	}
	return out
}

// siteCert is the gateway's own certificate, from a CA the test clients trust.
type siteCert = caddytesting.ServerTLS

func newSiteCert(t *testing.T) siteCert { return caddytesting.NewServerTLS(t, siteHost) }
