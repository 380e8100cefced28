package main

import (
	"bufio"
	"bytes"
	"context"
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

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
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
			"--events-file", eventsFile, "--metrics-token-file", tokenFile, "--node", "edge-7",
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
		if err := threat.ValidateEventJSON(line); err != nil {
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
		"no config":        {},
		"missing file":     {"--config", filepath.Join(dir, "nope.yaml")},
		"bad proxies":      {"--config", filepath.Join(dir, "nope.yaml"), "--trusted-proxies", "10.0.0.0/99"},
		"stray argument":   {"--config", "x", "extra"},
		"empty token file": {"--config", "x", "--metrics-token-file", filepath.Join(dir, "empty")},
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
