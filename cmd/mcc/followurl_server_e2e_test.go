package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"google.golang.org/grpc/codes"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/mccgate/mcc/internal/caddytesting"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/client"
	"github.com/mccgate/mcc/threat"
)

// TestFollowURLServerE2E: the real mcc server issues a build; Caddy (from a
// Caddyfile, in this process) and `mcc authz` both follow the set's CRL URL
// on that server; a revocation made through the API is refused by Caddy on
// a real mTLS request and denied by a real gRPC Check, each within 10
// seconds.
func TestFollowURLServerE2E(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := server.Open(ctx, server.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go s.Run(ctx)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()

	secret, _, err := s.Tokens().Create(ctx, "e2e-admin", []auth.Scope{auth.ScopeAdmin}, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	doc := "fusion_sets:\n  - id: bank\n    app_id: bank-app\n    mode: defense\n    threat_events: true\n"
	req, _ := http.NewRequest(http.MethodPut, hs.URL+"/v1/fusion-sets/bank", strings.NewReader(doc))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("If-None-Match", "*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publishing the set: %s", resp.Status)
	}
	api, err := client.New(client.Options{Server: hs.URL, Token: secret})
	if err != nil {
		t.Fatal(err)
	}
	build, err := api.IssueBuild(ctx, "bank", client.BuildRequest{AppID: "bank-app", BuildID: "b1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	crt, err := api.Certificate(ctx, build.Certificate.Serial)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(crt.PEM))
	if block == nil {
		t.Fatalf("certificate PEM %q", crt.PEM)
	}
	leaf := block.Bytes
	caPEM, err := api.CAPEM(ctx, "bank")
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fusion.yaml")
	gw := authzYAML(caFile, "defense") + fmt.Sprintf("    revocation:\n      urls: [%q]\n      url_interval: 1s\n", hs.URL+"/v1/fusion-sets/bank/crl.pem")
	if err := os.WriteFile(cfgPath, []byte(gw), 0o600); err != nil {
		t.Fatal(err)
	}
	_, serving := startAuthz(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--watch-interval", "50ms")
	check := followURLCheck(t, serving, leaf)
	if c := check(); c != codes.OK {
		t.Fatalf("issued certificate before the revocation: %v", c)
	}
	caddyGet := startFollowingCaddy(t, cfgPath, build.Bundle)
	if status, body := caddyGet(); status != http.StatusOK {
		t.Fatalf("Caddy refused the issued certificate before the revocation: %d %s", status, body)
	}
	if _, err := api.Revoke(ctx, client.RevokeRequest{Serial: build.Certificate.Serial, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	waitDenied(t, check, 10*time.Second, "the revocation through the API")
	for {
		status, body := caddyGet()
		if status == http.StatusForbidden && strings.Contains(body, string(threat.ReasonCertRevoked)) {
			break
		}
		if time.Since(revoked) > 10*time.Second {
			t.Fatalf("Caddy does not refuse the certificate within 10s of the revocation: %d %s", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("Caddy refuses the certificate %s after the revocation through the API", time.Since(revoked).Round(time.Millisecond))
}

// startFollowingCaddy runs Caddy in this process from a Caddyfile whose
// mcc app loads fusionFile (and so follows its revocation URLs), and
// returns a function that sends one request over a new mTLS connection
// with the bundle's certificate: the status and body.
func startFollowingCaddy(t *testing.T, fusionFile string, bundle *client.Bundle) func() (int, string) {
	t.Helper()
	key, leaf, chain, err := pkcs12.DecodeChain(bundle.Data, bundle.Password)
	if err != nil {
		t.Fatalf("decoding the build's bundle: %v", err)
	}
	clientCert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		clientCert.Certificate = append(clientCert.Certificate, c.Raw)
	}
	// Caddy's storage and autosave go to a scratch home, not the user's.
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	const host = "api.bank.example"
	srv := caddytesting.NewServerTLS(t, host)
	port := freeTCPPort(t)
	httpPort := freeTCPPort(t)
	cf := fmt.Sprintf(`{
	admin off
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
		watch_interval 50ms
	}
}
%s:%d {
	tls %s %s {
		client_auth {
			mode request
		}
	}
	route {
		fusion_set bank
		respond "ok" 200
	}
}
`, httpPort, port, fusionFile, host, port, srv.CertFile, srv.KeyFile)
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("adapting the Caddyfile: %v %v\n%s", err, warnings, cf)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("starting Caddy: %v\n%s", err, cf)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
	return func() (int, string) {
		t.Helper()
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: srv.Roots, ServerName: host, MinVersion: tls.VersionTLS12,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil }},
			DisableKeepAlives: true,
		}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/v1/balance", port), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Accept", "application/json")
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("request to Caddy: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}

// freeTCPPort is a loopback port nothing listened on a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
