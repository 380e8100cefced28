package parity

import (
	"context"
	"crypto/tls"
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
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/mccgate/mcc/caddymod" // the mcc app and the fusion_set handler
	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/caddytesting"
	"github.com/mccgate/mcc/threat"
)

// Ports of this package's in-process Caddy, distinct from other packages'.
const (
	httpPort  = 29280
	httpsPort = 29643
	// siteHost is the site address and SNI (Caddy requires Host == SNI
	// under client auth).
	siteHost = "mcc.localhost"
	timeout  = 60 * time.Second
)

// verdict is what a client can observe of one decision.
type verdict struct {
	Action  string // "allow" or "block"
	Status  int    // HTTP status of a block
	Reason  threat.Reason
	Message string // user-facing message of a block
}

func (v verdict) String() string {
	if v.Action == "allow" {
		return fmt.Sprintf("allow reason=%q", v.Reason)
	}
	return fmt.Sprintf("block %d reason=%q message=%q", v.Status, v.Reason, v.Message)
}

var modes = []struct {
	name   string
	mode   threat.Mode
	events bool
}{
	{"defense events off", threat.ModeDefense, false},
	{"detection events on", threat.ModeDetection, true},
	{"defense events on", threat.ModeDefense, true},
}

// handshakeOnly are the corpus cases no TLS stack lets through: the chain
// does not parse, so Go (Caddy) and BoringSSL (Envoy) both refuse the
// handshake before any handler or Check runs. Caddy's side is checked to
// refuse them; Envoy never sends them to Check.
var handshakeOnly = map[string]bool{
	"garbage_der":            true,
	"malformed_intermediate": true,
	// Go refuses to parse a negative serial (RFC 5280 wants a positive
	// one); the engine reports CERT_MALFORMED where it can see one.
	"serial_negative": true,
}

// The same corpus and the same fusion set file give the same action, HTTP
// status, reason code and message in Caddy and in Envoy's ext_authz, in each
// mode.
func TestParityCaddyEnvoy(t *testing.T) {
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	srv := newServerTLS(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The backend reports what the gateway told it.
		_, _ = io.WriteString(w, "upstream reason="+r.Header.Get(fusion.HeaderReason))
	}))
	defer up.Close()

	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			file := corpus.WriteSetFile(t, "parity-"+strings.ReplaceAll(m.name, " ", "-")+".yaml", func(sc *fusion.SetConfig) {
				sc.Mode, sc.ThreatEvents = string(m.mode), m.events
				sc.Message = "Please update the Bank app (" + m.name + ")."
				sc.Status = 403
			})
			loadCaddy(t, srv, file, strings.TrimPrefix(up.URL, "http://"), filepath.Join(t.TempDir(), "caddy-events.jsonl"))
			check := startAuthz(t, file)

			compared := 0
			for i, tc := range corpus.Cases {
				caddyV, err := caddyVerdict(t, srv, tc)
				if handshakeOnly[tc.Name] {
					if err == nil {
						t.Errorf("%s: Caddy completed a handshake Go's TLS stack must refuse: %v", tc.Name, caddyV)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: Caddy request failed: %v", tc.Name, err)
					continue
				}
				envoyV := envoyVerdict(t, check, corpus, tc, i)
				if caddyV != envoyV {
					t.Errorf("%s: Caddy %v, Envoy %v", tc.Name, caddyV, envoyV)
				}
				// Both must also be right, not merely agree.
				want := "allow"
				if tc.Want != threat.ReasonNone && m.mode == threat.ModeDefense {
					want = "block"
				}
				if caddyV.Action != want || caddyV.Reason != tc.Want {
					t.Errorf("%s: both gateways gave %v, want %s %q", tc.Name, caddyV, want, tc.Want)
				}
				compared++
			}
			if compared != len(corpus.Cases)-len(handshakeOnly) {
				t.Fatalf("compared %d of %d cases", compared, len(corpus.Cases))
			}
		})
	}
}

// loadCaddy loads a Caddyfile that guards the site with the fusion set file.
func loadCaddy(t *testing.T, srv serverTLS, setFile, upstream, sink string) {
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
`, adminPort, httpPort, httpsPort, setFile, sink, siteHost, httpsPort, srv.CertFile, srv.KeyFile, upstream)
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: timeout, TestRequestTimeout: timeout,
	})
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.Fatalf("loading the Caddyfile failed:\n%s", cfg)
	}
}

// caddyVerdict sends the case over a fresh TLS connection to Caddy.
func caddyVerdict(t *testing.T, srv serverTLS, tc fusiontest.Case) (verdict, error) {
	t.Helper()
	tlsCfg := &tls.Config{RootCAs: srv.Roots, ServerName: siteHost, MinVersion: tls.VersionTLS12}
	if len(tc.Chain) > 0 {
		cert := tc.TLSCertificate()
		// Send the chain whatever CAs the server names.
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	dialer := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort)))
		},
		TLSClientConfig:     tlsCfg,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d/v1/balance", siteHost, httpsPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(fusiontest.HeaderDeviceID, "device-"+tc.Name)
	req.Header.Set(fusiontest.HeaderOSVersion, "Android 16")
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		return verdict{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return verdict{}, err
	}
	if reason, ok := strings.CutPrefix(string(b), "upstream reason="); ok && resp.StatusCode == http.StatusOK {
		return verdict{Action: "allow", Reason: threat.Reason(reason)}, nil
	}
	return blockVerdict(t, tc.Name+" (Caddy)", resp.StatusCode, string(b)), nil
}

// envoyVerdict sends the case to Check as Envoy would: the leaf in
// attributes.source.certificate, the chain in the XFCC header the control
// plane has Envoy set.
func envoyVerdict(t *testing.T, client authv3.AuthorizationClient, c *fusiontest.Corpus, tc fusiontest.Case, i int) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := client.Check(ctx, envoytest.CheckRequest(envoytest.Check{
		FusionSet:  c.SetID,
		Chain:      tc.Chain,
		SourceAddr: fmt.Sprintf("127.0.0.1:%d", 40000+i),
		DestAddr:   "127.0.0.1:" + strconv.Itoa(httpsPort),
		SNI:        siteHost,
		Host:       siteHost,
		Method:     http.MethodGet,
		Path:       "/v1/balance",
		RequestID:  tc.Name,
		Headers: map[string]string{
			"accept":                   "application/json",
			fusiontest.HeaderDeviceID:  "device-" + tc.Name,
			fusiontest.HeaderOSVersion: "Android 16",
		},
	}))
	if err != nil {
		t.Fatalf("%s: Check: %v", tc.Name, err)
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		v := verdict{Action: "allow"}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if strings.EqualFold(h.GetHeader().GetKey(), fusion.HeaderReason) {
				v.Reason = threat.Reason(h.GetHeader().GetValue())
			}
		}
		return v
	}
	d := resp.GetDeniedResponse()
	v := blockVerdict(t, tc.Name+" (Envoy)", int(d.GetStatus().GetCode()), d.GetBody())
	if string(v.Reason) != resp.GetStatus().GetMessage() {
		t.Errorf("%s: Envoy deny status says %q, body says %q", tc.Name, resp.GetStatus().GetMessage(), v.Reason)
	}
	return v
}

// blockVerdict reads a JSON block page (adapter.Block).
func blockVerdict(t *testing.T, what string, status int, body string) verdict {
	t.Helper()
	var page struct {
		Message    string `json:"message"`
		ReasonCode string `json:"reasonCode"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Errorf("%s: status %d with a body that is not a block page: %q", what, status, body)
	}
	return verdict{Action: "block", Status: status, Reason: threat.Reason(page.ReasonCode), Message: page.Message}
}

// startAuthz runs the ext_authz service on the same fusion set file and
// returns a real gRPC client for it.
func startAuthz(t *testing.T, setFile string) authv3.AuthorizationClient {
	t.Helper()
	cfg, err := fusion.LoadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	return startAuthzWith(t, envoyext.Options{Config: cfg, Node: "parity"})
}

// startAuthzWith serves mcc authz with o on a loopback port until the
// test ends and returns a Check client, as Envoy calls it.
func startAuthzWith(t *testing.T, o envoyext.Options) authv3.AuthorizationClient {
	t.Helper()
	svc, err := envoyext.New(o)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, envoyext.ServeOptions{GRPC: lis}) }()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return authv3.NewAuthorizationClient(cc)
}

// serverTLS is the gateway's own certificate, from a CA the test clients trust.
type serverTLS = caddytesting.ServerTLS

func newServerTLS(t *testing.T) serverTLS { return caddytesting.NewServerTLS(t, siteHost) }
