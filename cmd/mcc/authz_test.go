package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/internal/testport"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// authzLogBuffer collects the command's stderr (JSON log lines) safely.
type authzLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *authzLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *authzLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog polls the log until a line with msg appears and returns its fields.
func (b *authzLogBuffer) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(b.String()))
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
				return m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q log line within 30s; log:\n%s", msg, b.String())
	return nil
}

func authzYAML(caFile, mode string) string {
	return fmt.Sprintf("fusion_sets:\n  - id: bank\n    trusted_ca: {file: %q}\n    app_id: bank-app\n    mode: %s\n    threat_events: true\n", caFile, mode)
}

// `mcc authz` serves Check and the admin port, reloads a changed file, keeps
// the last good config when the file turns bad, writes events to
// --events-file and stops cleanly when its context ends.
func TestRunAuthz(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(pki.IssueRequest{FusionSet: "bank", AppID: "bank-app", Build: certid.BuildInfo{ID: "b1", Date: time.Now().Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca", pki.CACertFile)
	cfgPath := filepath.Join(dir, "fusion.yaml")
	if err := os.WriteFile(cfgPath, []byte(authzYAML(caFile, "defense")), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventsFile := filepath.Join(dir, "events.jsonl")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr authzLogBuffer
	done := make(chan error, 1)
	go func() {
		done <- runAuthz(ctx, []string{
			"--config", cfgPath, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--events-file", eventsFile, "--admin-token-file", tokenFile, "--node", "edge-7",
			"--trusted-proxies", "10.0.0.0/8", "--watch-interval", "50ms",
		}, io.Discard, &stderr)
	}()
	serving := stderr.waitLog(t, "mcc authz serving")
	grpcAddr, _ := serving["grpc"].(string)
	adminAddr, _ := serving["admin"].(string)

	cc, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	check := func(leaf []byte, id string) *authv3.CheckResponse {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		resp, err := client.Check(cctx, envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: leaf, SourceAddr: "10.0.0.1:1000", Host: "api.bank.example",
			Method: "GET", Path: "/", RequestID: id, Headers: map[string]string{"x-forwarded-for": "203.0.113.8"},
		}))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	if resp := check(iss.Cert.Raw, "good"); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("good certificate denied: %v", resp.GetStatus())
	}
	if resp := check(nil, "nocert-defense"); codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("defense must deny a missing certificate: %v", resp.GetStatus())
	}

	// Admin: open health, token-protected metrics.
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without token: %d", code)
	}
	if code, _ := get("/metrics", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics with a wrong token: %d", code)
	}
	if code, body := get("/metrics", "s3cret-token"); code != 200 || !strings.Contains(body, `mcc_authz_decisions_total{action="block",fusion_set="bank",reason="NO_CLIENT_CERT"} 1`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}

	// Hot reload: detection now allows a missing certificate.
	if err := os.WriteFile(cfgPath, []byte(authzYAML(caFile, "detection")), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.waitLog(t, "fusion set file reloaded")
	if resp := check(nil, "nocert-detection"); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("after reload to detection a missing certificate must pass: %v", resp.GetStatus())
	}
	// A bad file is refused; the last good config keeps serving.
	if err := os.WriteFile(cfgPath, []byte("fusion_sets:\n  - id: bank\n    mode: sideways\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.waitLog(t, "fusion set file rejected; the last good version keeps serving")
	if resp := check(nil, "nocert-after-bad"); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("after a bad file the last good (detection) config must serve: %v", resp.GetStatus())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runAuthz: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runAuthz did not stop after its context ended")
	}

	data, err := os.ReadFile(eventsFile)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if err := schematest.ValidateEventJSON(line); err != nil {
			t.Fatalf("event fails the schema: %v\n%s", err, line)
		}
		var e threat.Event
		if err := e.UnmarshalJSON(line); err != nil {
			t.Fatal(err)
		}
		if e.Node != "edge-7" || e.ClientIP != "203.0.113.8" || e.Gateway != "envoy" {
			t.Errorf("event context: node %q ip %q gateway %q", e.Node, e.ClientIP, e.Gateway)
		}
		seen[e.ExternalID] = true
	}
	for _, id := range []string{"nocert-defense", "nocert-detection", "nocert-after-bad"} {
		if !seen[id] {
			t.Errorf("no event for %s in %s", id, eventsFile)
		}
	}
}

func TestRunAuthzBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]string{
		"no config":         {},
		"missing file":      {"--config", filepath.Join(dir, "nope.yaml")},
		"bad proxies":       {"--config", filepath.Join(dir, "nope.yaml"), "--trusted-proxies", "10.0.0.0/99"},
		"stray argument":    {"--config", "x", "extra"},
		"empty token file":  {"--config", "x", "--admin-token-file", filepath.Join(dir, "empty")},
		"both token flags":  {"--config", "x", "--admin-token-file", filepath.Join(dir, "empty"), "--metrics-token-file", filepath.Join(dir, "empty")},
		"peer without mTLS": {"--config", "x", "--peer", "spiffe://mcc/envoy/mcc-edge"},
		"cert without key":  {"--config", "x", "--tls-cert", "cert.pem"},
		"zero burst":        {"--config", "x", "--handshake-failure-burst", "0"},
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range cases {
		if err := runAuthz(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Without --listen, mcc authz listens where the gateway section tells mcc xds
// to point Envoy.
func TestAuthzListenAddressFromGateway(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fusion.yaml")
	if err := os.WriteFile(cfgPath, []byte(authzYAML(filepath.Join(dir, "ca", pki.CACertFile), "defense")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := fusion.LoadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := zap.NewNop()
	if got := authzListenAddress(cfg, log); got != defaultAuthzListen {
		t.Fatalf("no gateway section: %q", got)
	}
	// A gateway section's authz address, as mcc xds points Envoy at it.
	srv, err := ca.Issue(pki.IssueRequest{FusionSet: "bank", AppID: "edge", Build: certid.BuildInfo{ID: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "edge.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "edge-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	gwPath := filepath.Join(dir, "with-gateway.yaml")
	if err := os.WriteFile(gwPath, []byte(authzYAML(filepath.Join(dir, "ca", pki.CACertFile), "defense")+`gateway:
  authz: {address: "127.0.0.1:19091"}
  listeners:
    - name: edge
      port: 8443
      certificate: {cert_file: edge.pem, key_file: edge-key.pem}
      routes: [{host: api.bank.example, fusion_set: bank, upstream: api}]
  upstreams: [{name: api, endpoints: ["127.0.0.1:8081"]}]
  node_groups: [{cluster: edge, listeners: [edge]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = fusion.LoadFile(gwPath); err != nil {
		t.Fatal(err)
	}
	if got := authzListenAddress(cfg, log); got != "127.0.0.1:19091" {
		t.Fatalf("gateway authz address: got %q", got)
	}
}

// authzSetup is a CA, a fusion set file and a token file for runAuthz tests.
func authzSetup(t *testing.T, extraYAML string) (dir, cfgPath, tokenFile string, leaf []byte) {
	t.Helper()
	dir = t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(pki.IssueRequest{FusionSet: "bank", AppID: "bank-app", Build: certid.BuildInfo{ID: "b1", Date: time.Now().Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "fusion.yaml")
	if err := os.WriteFile(cfgPath, []byte(authzYAML(filepath.Join(dir, "ca", pki.CACertFile), "defense")+extraYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath, tokenFile, iss.Cert.Raw
}

// startAuthz runs `mcc authz args...` until the test ends and returns its
// log once it serves.
func startAuthz(t *testing.T, args ...string) (*authzLogBuffer, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr authzLogBuffer
	done := make(chan error, 1)
	go func() { done <- runAuthz(ctx, args, io.Discard, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runAuthz: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("runAuthz did not stop")
		}
	})
	return &stderr, stderr.waitLog(t, "mcc authz serving")
}

// Off loopback, mcc authz refuses to serve plaintext gRPC or a plaintext
// admin port unless --insecure-plaintext, which it warns about.
func TestRunAuthzRefusesPlaintextOffLoopback(t *testing.T) {
	_, cfgPath, _, _ := authzSetup(t, "")
	for name, args := range map[string][]string{
		"grpc":       {"--config", cfgPath, "--listen", "0.0.0.0:0", "--admin", "off"},
		"access log": {"--config", cfgPath, "--listen", "127.0.0.1:0", "--access-log-listen", "0.0.0.0:0", "--admin", "off"},
		"admin":      {"--config", cfgPath, "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"},
	} {
		err := runAuthz(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "--insecure-plaintext") {
			t.Errorf("%s: got %v, want a refusal naming --insecure-plaintext", name, err)
		}
	}
	logs, _ := startAuthz(t, "--config", cfgPath, "--listen", "0.0.0.0:0", "--admin", "off", "--insecure-plaintext")
	if !strings.Contains(logs.String(), "INSECURE") {
		t.Errorf("--insecure-plaintext off loopback without a warning:\n%s", logs.String())
	}
}

// The documented setup: mTLS with Envoy's client certificate, an allow-list
// per service, the access-log service on its own address, the admin port
// over TLS with the token, and /status.
func TestRunAuthzMTLS(t *testing.T) {
	dir, cfgPath, tokenFile, leaf := authzSetup(t, "")
	ctl, err := envoytest.NewControlPKI(dir, "control")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ctl.Server("mcc-authz")
	if err != nil {
		t.Fatal(err)
	}
	envoyCert, envoyKey, err := ctl.Client("envoy", "spiffe://mcc/envoy/mcc-edge")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, err := ctl.Client("other", "spiffe://mcc/other")
	if err != nil {
		t.Fatal(err)
	}
	logs, serving := startAuthz(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--access-log-listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--admin-token-file", tokenFile,
		"--tls-cert", srvCert, "--tls-key", srvKey, "--client-ca", ctl.CAFile,
		"--peer", "spiffe://mcc/envoy/mcc-edge", "--access-log-peer", "spiffe://mcc/envoy/mcc-edge")
	grpcAddr, _ := serving["grpc"].(string)
	alsAddr, _ := serving["access_log"].(string)
	adminAddr, _ := serving["admin"].(string)
	if alsAddr == "" || alsAddr == grpcAddr {
		t.Fatalf("access-log listener %q, Check listener %q", alsAddr, grpcAddr)
	}

	dial := func(addr, cert, key string) *grpc.ClientConn {
		t.Helper()
		creds, err := ctl.ClientCredentials(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	check := func(cc *grpc.ClientConn) (*authv3.CheckResponse, error) {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return authv3.NewAuthorizationClient(cc).Check(cctx, envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: leaf, SourceAddr: "198.51.100.1:1000", Host: "api.bank.example", Method: "GET", Path: "/",
		}))
	}
	if resp, err := check(dial(grpcAddr, envoyCert, envoyKey)); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Envoy's Check: %v %v", resp.GetStatus(), err)
	}
	if _, err := check(dial(grpcAddr, "", "")); status.Code(err) != codes.Unavailable {
		t.Errorf("Check without a client certificate: %v", err)
	}
	if _, err := check(dial(grpcAddr, otherCert, otherKey)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Check from an identity not allowed: %v", err)
	}
	// The access-log service answers on its own address only.
	cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := accesslogv3.NewAccessLogServiceClient(dial(alsAddr, envoyCert, envoyKey)).StreamAccessLogs(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(envoytest.TCPLogs("envoy-1", "mcc-handshake", envoytest.TCPEntry(envoytest.Connection{
		RemoteAddr: "198.51.100.2:1", LocalAddr: "192.0.2.1:443", FailureReason: envoytest.HandshakeFailure}))); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("access log on --access-log-listen: %v", err)
	}

	// Admin over TLS, token required for /metrics and /status.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(ctl.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	get := func(path, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+adminAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, path := range []string{"/status", "/metrics"} {
		for _, wrong := range []string{"", "s3cret-toke", "s3cret-token-and-more"} {
			if code, _ := get(path, wrong); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %d, want 401", path, wrong, code)
			}
		}
	}
	code, body := get("/status", "s3cret-token")
	var st envoyext.Status
	if code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("/status: %d %s", code, body)
	}
	if len(st.Config.Version) != 12 || st.Config.LoadedAt.IsZero() || st.Config.FusionSets[0] != "bank" ||
		st.Store.Name != "memory" || st.Store.Failing || len(st.Sinks) == 0 {
		t.Errorf("/status: %s", body)
	}
	if strings.Contains(logs.String(), "s3cret-token") {
		t.Errorf("the admin token reached the log")
	}
}

// --metrics-token-file still works, with a warning to use the new name.
func TestRunAuthzDeprecatedMetricsTokenFlag(t *testing.T) {
	_, cfgPath, tokenFile, _ := authzSetup(t, "")
	logs, serving := startAuthz(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--metrics-token-file", tokenFile)
	if !strings.Contains(logs.String(), "--metrics-token-file is deprecated") {
		t.Errorf("no deprecation warning:\n%s", logs.String())
	}
	adminAddr, _ := serving["admin"].(string)
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/status without the token: %d", resp.StatusCode)
	}
}

// --listen and the gateway section's authz addresses cannot silently
// disagree with mcc authz: mcc xds points Envoy at the gateway section's.
func TestRunAuthzWarnsWhenListenDiffersFromGateway(t *testing.T) {
	dir, _, _, _ := authzSetup(t, "")
	writeServerCertForGateway(t, dir)
	// A free port for the gateway section's access-log address, outside
	// the range other tests' ":0" listeners take theirs from.
	alsAddr := "127.0.0.1:" + testport.Outside(t)
	gwPath := filepath.Join(dir, "with-gateway.yaml")
	if err := os.WriteFile(gwPath, []byte(authzYAML(filepath.Join(dir, "ca", pki.CACertFile), "defense")+`gateway:
  authz:
    address: "127.0.0.1:19091"
    access_log_address: "`+alsAddr+`"
    tls: {ca_file: control-ca.pem, cert_file: envoy.pem, key_file: envoy-key.pem, server_name: localhost}
  listeners:
    - name: edge
      port: 8443
      certificate: {cert_file: edge.pem, key_file: edge-key.pem}
      routes: [{host: api.bank.example, fusion_set: bank, upstream: api}]
  upstreams: [{name: api, endpoints: ["127.0.0.1:8081"]}]
  node_groups: [{cluster: edge, listeners: [edge]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	logs, serving := startAuthz(t, "--config", gwPath, "--listen", "127.0.0.1:0", "--admin", "off")
	m := logs.waitLog(t, "--listen differs from the gateway section's authz.address, where mcc xds points Envoy; Envoy will not reach this listener unless something forwards to it")
	if m["gateway_address"] != "127.0.0.1:19091" || m["listen"] != "127.0.0.1:0" {
		t.Errorf("warning fields: %v", m)
	}
	// Without --access-log-listen, the gateway section's access-log
	// address is used.
	if serving["access_log"] != alsAddr {
		t.Errorf("access-log listener %v, want the gateway section's %s", serving["access_log"], alsAddr)
	}
	// The gateway has Envoy call over mTLS, mcc authz serves plaintext.
	logs.waitLog(t, "the gateway section's authz.tls makes Envoy call mcc authz over mTLS, but --tls-cert, --tls-key and --client-ca are not set: Envoy's calls will fail")
	for _, c := range []struct {
		listen, target string
		same           bool
	}{
		{"127.0.0.1:19091", "127.0.0.1:19091", true},
		{"0.0.0.0:19091", "10.0.0.5:19091", true},
		{"[::]:19091", "10.0.0.5:19091", true},
		{"127.0.0.1:19092", "127.0.0.1:19091", false},
		{"10.0.0.6:19091", "10.0.0.5:19091", false},
	} {
		if got := sameListenAddress(c.listen, c.target); got != c.same {
			t.Errorf("sameListenAddress(%s, %s) = %v", c.listen, c.target, got)
		}
	}
}

// writeServerCertForGateway writes edge.pem and edge-key.pem, the listener
// certificate a gateway section needs to decode.
func writeServerCertForGateway(t *testing.T, dir string) {
	t.Helper()
	ctl, err := envoytest.NewControlPKI(dir, "edge-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ctl.Server("edge-srv")
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{cert: "edge.pem", key: "edge-key.pem"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
