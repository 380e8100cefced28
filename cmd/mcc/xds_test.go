package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mccgate/mcc/xds/xdstest"
)

// xdsExampleFile writes the Envoy example's fusion set file and the files it
// references into a temporary directory.
func xdsExampleFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "envoy", "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{"bank-prod", "bank-beta"} {
		ca := xdstest.NewCA(t, set)
		xdstest.WriteFile(t, dir, "ca/"+set+"/ca.pem", ca.CertPEM)
		xdstest.WriteFile(t, dir, "ca/"+set+"/crl.pem", ca.CRL(t))
		xdstest.WriteFile(t, dir, "ca/"+set+"/revoked.txt", nil)
	}
	server := xdstest.NewCA(t, "server").IssueServer(t, "bank.localhost")
	xdstest.WriteFile(t, dir, "server.pem", server.CertPEM)
	xdstest.WriteFile(t, dir, "server-key.pem", server.KeyPEM)
	return xdstest.WriteFile(t, dir, "fusion-sets.yaml", data)
}

func TestXDSHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, "xds", "--help")
	if code != 0 || !strings.Contains(stdout+stderr, "Usage: mcc xds --config FILE") {
		t.Errorf("xds --help: %d\n%s%s", code, stdout, stderr)
	}
	for _, flag := range []string{"-listen", "-admin", "-admin-token-file", "-watch-interval", "-tls-cert", "-tls-key", "-client-ca", "-insecure-plaintext", "-max-nodes", "-max-streams"} {
		if !strings.Contains(stderr, flag) {
			t.Errorf("--help does not list %s", flag)
		}
	}
}

func TestXDSBadInput(t *testing.T) {
	code, _, stderr := runCLI(t, "xds")
	wantOneLineError(t, code, stderr, 2, "--config is required")

	dir := t.TempDir()
	code, _, stderr = runCLI(t, "xds", "--config", filepath.Join(dir, "none.yaml"))
	wantOneLineError(t, code, stderr, 1, "file not found: "+filepath.Join(dir, "none.yaml"))

	path := xdsExampleFile(t)
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(data, []byte("port: 8443"), []byte("port: 0"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "xds", "--config", path)
	wantOneLineError(t, code, stderr, 1, "gateway.listeners[0].port: must be a port number")

	code, _, stderr = runCLI(t, "xds", "--config", path, "--admin-token-file", filepath.Join(t.TempDir(), "none"))
	wantOneLineError(t, code, stderr, 1, "--admin-token-file")
}

// syncBuffer collects the JSON log lines of a running command.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestRunXDS(t *testing.T) {
	path := xdsExampleFile(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("xds-admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"xds", "--config", path, "--listen", "127.0.0.1:0", "--admin", admin,
			"--admin-token-file", tokenFile, "--watch-interval", "50ms"}, io.Discard, &logs)
	}()

	get := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for get("/healthz", "") != 200 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("admin port never answered; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := get("/status", ""); code != http.StatusUnauthorized {
		t.Errorf("/status without token = %d", code)
	}
	if code := get("/status", "xds-admin-token"); code != 200 {
		t.Errorf("/status with token = %d", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; log:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mcc xds did not stop on cancel")
	}
	for _, want := range []string{`"msg":"configuration loaded"`, `"msg":"xDS control plane serving"`, `"msg":"xDS control plane stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// TestXDSRefusesPlaintextOffLoopback: the documented default for any
// address that is not loopback is mTLS; plaintext needs an explicit flag.
func TestXDSRefusesPlaintextOffLoopback(t *testing.T) {
	path := xdsExampleFile(t)
	code, _, stderr := runCLI(t, "xds", "--config", path, "--listen", "0.0.0.0:0", "--admin", "off")
	wantOneLineError(t, code, stderr, 1, "--listen 0.0.0.0:0 is not a loopback address: pass --tls-cert, --tls-key and --client-ca")

	dir := t.TempDir()
	ca := xdstest.NewCA(t, "control CA")
	server := ca.IssueServer(t, "localhost")
	cert := xdstest.WriteFile(t, dir, "xds.pem", server.CertPEM)
	key := xdstest.WriteFile(t, dir, "xds-key.pem", server.KeyPEM)
	code, _, stderr = runCLI(t, "xds", "--config", path, "--listen", "0.0.0.0:0", "--admin", "off", "--tls-cert", cert, "--tls-key", key)
	wantOneLineError(t, code, stderr, 1, "pass --client-ca")

	code, _, stderr = runCLI(t, "xds", "--config", path, "--admin", "0.0.0.0:0")
	wantOneLineError(t, code, stderr, 1, "--admin 0.0.0.0:0 is not a loopback address")

	code, _, stderr = runCLI(t, "xds", "--config", path, "--tls-cert", cert)
	wantOneLineError(t, code, stderr, 1, "--tls-cert and --tls-key go together")
}

// TestRunXDSOverMTLS starts mcc xds with the README's TLS flags: the
// example's Envoy certificate gets its node group over ADS, a certificate
// that is not a peer gets nothing, and the admin port speaks HTTPS.
func TestRunXDSOverMTLS(t *testing.T) {
	path := xdsExampleFile(t)
	dir := t.TempDir()
	ca := xdstest.NewCA(t, "control CA")
	server := ca.IssueServer(t, "localhost")
	cert := xdstest.WriteFile(t, dir, "xds.pem", server.CertPEM)
	key := xdstest.WriteFile(t, dir, "xds-key.pem", server.KeyPEM)
	caFile := xdstest.WriteFile(t, dir, "ca.pem", ca.CertPEM)
	listen, admin := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"xds", "--config", path, "--listen", listen, "--admin", admin,
			"--tls-cert", cert, "--tls-key", key, "--client-ca", caFile}, io.Discard, &logs)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("mcc xds did not stop")
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("https://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin port never answered over HTTPS: %v; log:\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	waitCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	envoy := ca.IssuePeer(t, "envoy-edge", "spiffe://mcc/envoy/mcc-edge")
	c, err := xdstest.StartSotW(waitCtx, xdstest.DialTLS(t, listen, "localhost", ca, envoy), &corev3.Node{Id: "envoy-1", Cluster: "mcc-edge"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Wait(waitCtx, func(v xdstest.View) bool { return len(v.Resources[resourcev3.ListenerType]) == 1 }); err != nil {
		t.Fatalf("the example's Envoy certificate: %v; log:\n%s", err, logs.String())
	}
	rogue := ca.IssuePeer(t, "rogue", "spiffe://mcc/envoy/rogue")
	r, err := xdstest.StartSotW(waitCtx, xdstest.DialTLS(t, listen, "localhost", ca, rogue), &corev3.Node{Id: "rogue", Cluster: "mcc-edge"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	view, err := r.Wait(waitCtx, func(xdstest.View) bool { return false })
	if status.Code(err) != codes.PermissionDenied || len(view.Responses) != 0 {
		t.Errorf("rogue: %d responses, err %v; want none and PermissionDenied", len(view.Responses), err)
	}
}
