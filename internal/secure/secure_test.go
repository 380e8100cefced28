package secure_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mccgate/mcc/internal/secure"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:18000": true,
		"127.9.9.9:1":     true,
		"[::1]:18000":     true,
		"localhost:80":    true,
		":18000":          false,
		"0.0.0.0:18000":   false,
		"[::]:1":          false,
		"10.0.0.5:18000":  false,
		"example.com:443": false,
	} {
		if got := secure.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestCheckListen(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)

	var f secure.ServerFlags
	if err := f.CheckListen("--listen", "127.0.0.1:1", log); err != nil {
		t.Fatalf("loopback without TLS: %v", err)
	}
	err := f.CheckListen("--listen", "0.0.0.0:18000", log)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") || !strings.Contains(err.Error(), "--insecure-plaintext") {
		t.Fatalf("off loopback without TLS: got %v, want a refusal naming --tls-cert and --insecure-plaintext", err)
	}
	f = secure.ServerFlags{CertFile: "c", KeyFile: "k"}
	if err := f.CheckListen("--listen", ":18000", log); err == nil || !strings.Contains(err.Error(), "--client-ca") {
		t.Fatalf("off loopback with TLS but no client CA: got %v", err)
	}
	f = secure.ServerFlags{InsecurePlaintext: true}
	if err := f.CheckListen("--listen", ":18000", log); err != nil {
		t.Fatalf("explicit insecure: %v", err)
	}
	if logs.FilterMessageSnippet("INSECURE").Len() != 1 {
		t.Fatalf("explicit insecure must warn once per start, got %v", logs.All())
	}
	f = secure.ServerFlags{CertFile: "c"}
	if err := f.Check(); err == nil {
		t.Fatal("--tls-cert without --tls-key accepted")
	}
	f = secure.ServerFlags{ClientCAFile: "ca"}
	if err := f.Check(); err == nil {
		t.Fatal("--client-ca without --tls-cert accepted")
	}

	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var g secure.ServerFlags
	g.Register(fs)
	if err := fs.Parse([]string{"--tls-cert", "a", "--tls-key", "b", "--client-ca", "c"}); err != nil {
		t.Fatal(err)
	}
	if g.CertFile != "a" || g.KeyFile != "b" || g.ClientCAFile != "c" || !g.TLS() {
		t.Fatalf("flags not registered: %+v", g)
	}
}

func TestBearerToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("secret metrics")) })
	h := secure.BearerToken("s3cret-token", "test", ok)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", 401},
		{"Bearer ", 401},
		{"Bearer s3cret", 401},
		{"Bearer s3cret-token-and-more", 401},
		{"Basic s3cret-token", 401},
		{"s3cret-token", 401},
		{"Bearer s3cret-token", 200},
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("Authorization %q: status %d, want %d", tc.auth, w.Code, tc.want)
		}
		if w.Code == 401 && (strings.Contains(w.Body.String(), "secret") || w.Header().Get("WWW-Authenticate") == "") {
			t.Errorf("Authorization %q: 401 leaked the body or lacks WWW-Authenticate", tc.auth)
		}
	}
	// An empty token means no check (loopback-only admin by default).
	w := httptest.NewRecorder()
	secure.BearerToken("", "test", ok).ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != 200 {
		t.Fatalf("no token configured: %d", w.Code)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{"tok\n": "tok", "tok": "tok", "tok\r\n": "tok", " tok \n": " tok "} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := secure.ReadSecretFile(p)
		if err != nil || got != want {
			t.Errorf("ReadSecretFile(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
	p := filepath.Join(dir, "empty")
	_ = os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := secure.ReadSecretFile(p); err == nil {
		t.Fatal("empty secret accepted")
	}
}

// TestMutualTLSOverGRPC serves a real gRPC service with ServerTLS and
// checks that a client without a certificate, or with one from another CA,
// is refused in the handshake, and that a good client's identities reach
// the handler.
func TestMutualTLSOverGRPC(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "control CA")
	other := newCA(t, "other CA")
	srvCert, srvKey := ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	})
	cliCert, cliKey := ca.issue(t, dir, "envoy", x509.ExtKeyUsageClientAuth, func(c *x509.Certificate) {
		u, _ := url.Parse("spiffe://mcc/envoy/edge")
		c.URIs = []*url.URL{u}
	})
	badCert, badKey := other.issue(t, dir, "rogue", x509.ExtKeyUsageClientAuth, nil)
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", ca.cert.Raw)

	f := secure.ServerFlags{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile}
	creds, err := f.GRPCCredentials()
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan []string, 4)
	gs := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ids, _ := secure.PeerIdentities(ctx)
		seen <- ids
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	call := func(certFile, keyFile string) error {
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		cfg := &tls.Config{RootCAs: pool}
		if certFile != "" {
			kp, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := call("", ""); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := call(badCert, badKey); err == nil {
		t.Fatal("a client certificate from another CA was served")
	}
	if err := call(cliCert, cliKey); err != nil {
		t.Fatalf("good client refused: %v", err)
	}
	ids := <-seen
	if len(ids) == 0 || ids[0] != "spiffe://mcc/envoy/edge" {
		t.Fatalf("identities = %v, want the URI SAN first", ids)
	}
	if !secure.Allowed(ids, []string{"spiffe://mcc/envoy/edge"}) || secure.Allowed(ids, []string{"spiffe://mcc/envoy/other"}) {
		t.Fatal("Allowed does not match exactly")
	}
	select {
	case ids := <-seen:
		t.Fatalf("a refused client reached the handler as %v", ids)
	default:
	}
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) issue(t *testing.T, dir, name string, eku x509.ExtKeyUsage, edit func(*x509.Certificate)) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
