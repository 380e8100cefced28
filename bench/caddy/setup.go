package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mccgate/mcc/caddymod"

	"github.com/mccgate/mcc/pki"
)

// The benchmark's fusion set and app.
const (
	benchSet = "bench"
	benchApp = "bench-app"
)

// fixture is a running Caddy with two sites that differ only by the
// fusion_set directive, and the client side's TLS material.
type fixture struct {
	dir string
	// nativeURL serves `client_auth require_and_verify` + respond;
	// fusionURL the same plus `fusion_set`.
	nativeURL, fusionURL string
	// client presents the demo app certificate and trusts the server.
	client *tls.Config
	// clientCert is the parsed client certificate chain, for building a
	// real tls.ConnectionState without a network.
	clientCert tls.Certificate
	serverCert tls.Certificate
	caPool     *x509.CertPool
}

// newFixture writes the PKI and a Caddyfile into dir and starts Caddy.
// Caddy is a process-wide singleton: call stop before another newFixture.
func newFixture(dir string) (*fixture, error) {
	demo, err := pki.EnsureDemo(dir, benchSet, benchApp)
	if err != nil {
		return nil, err
	}
	serverCertPath, serverKeyPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	serverPEM, err := writeServerCert(serverCertPath, serverKeyPath)
	if err != nil {
		return nil, err
	}
	fusionFile := filepath.Join(dir, "fusion-sets.yaml")
	yaml := fmt.Sprintf("fusion_sets:\n  - id: %s\n    trusted_ca:\n      file: %q\n    app_id: %s\n    mode: defense\n    threat_events: true\n",
		benchSet, demo.CACert, benchApp)
	if err := os.WriteFile(fusionFile, []byte(yaml), 0o644); err != nil {
		return nil, err
	}

	nativePort, err := freePort()
	if err != nil {
		return nil, err
	}
	fusionPort, err := freePort()
	if err != nil {
		return nil, err
	}
	site := func(port int, extra string) string {
		return fmt.Sprintf(`localhost:%d {
	bind 127.0.0.1
	tls %q %q {
		client_auth {
			mode require_and_verify
			trust_pool file %q
		}
	}
%s	respond "ok"
}
`, port, serverCertPath, serverKeyPath, demo.CACert, extra)
	}
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https disable_redirects
	skip_install_trust
	grace_period 2s
	storage file_system %q
	log {
		level ERROR
	}
	mcc {
		fusion_sets %q
		store memory
		sink file %q
	}
}

%s
%s`, filepath.Join(dir, "caddy-data"), fusionFile, filepath.Join(dir, "events.jsonl"),
		site(nativePort, ""), site(fusionPort, "\tfusion_set "+benchSet+"\n"))
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cf), 0o644); err != nil {
		return nil, err
	}
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, fmt.Errorf("adapting the benchmark Caddyfile: %w", err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return nil, fmt.Errorf("starting Caddy: %w", err)
	}

	clientCert, err := tls.LoadX509KeyPair(demo.Cert, demo.Key)
	if err != nil {
		caddy.Stop()
		return nil, fmt.Errorf("loading the client certificate: %w", err)
	}
	serverCert, err := tls.LoadX509KeyPair(serverCertPath, serverKeyPath)
	if err != nil {
		caddy.Stop()
		return nil, err
	}
	caPEM, err := os.ReadFile(demo.CACert)
	if err != nil {
		caddy.Stop()
		return nil, err
	}
	caPool := x509.NewCertPool()
	caPool.AppendCertsFromPEM(caPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverPEM)
	return &fixture{
		dir:       dir,
		nativeURL: "https://localhost:" + strconv.Itoa(nativePort) + "/",
		fusionURL: "https://localhost:" + strconv.Itoa(fusionPort) + "/",
		client: &tls.Config{
			ServerName:   "localhost",
			RootCAs:      roots,
			Certificates: []tls.Certificate{clientCert},
			MinVersion:   tls.VersionTLS12,
		},
		clientCert: clientCert,
		serverCert: serverCert,
		caPool:     caPool,
	}, nil
}

func (f *fixture) stop() error { return caddy.Stop() }

// fusionHandler finds the provisioned fusion_set handler in the running
// config, so it can be called directly.
func fusionHandler() (caddyhttp.MiddlewareHandler, *caddyhttp.Server, error) {
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		return nil, nil, err
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		if h := findHandler(srv.Routes, "http.handlers.fusion_set"); h != nil {
			return h, srv, nil
		}
	}
	return nil, nil, errors.New("no fusion_set handler in the running config")
}

func findHandler(routes caddyhttp.RouteList, id caddy.ModuleID) caddyhttp.MiddlewareHandler {
	for _, rt := range routes {
		for _, h := range rt.Handlers {
			if m, ok := h.(caddy.Module); ok && m.CaddyModule().ID == id {
				return h
			}
			if sr, ok := h.(*caddyhttp.Subroute); ok {
				if found := findHandler(sr.Routes, id); found != nil {
					return found
				}
			}
		}
	}
	return nil
}

// writeServerCert writes a self-signed certificate for localhost and
// returns its PEM (the client's only trusted root).
func writeServerCert(certPath, keyPath string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	return certPEM, os.WriteFile(certPath, certPEM, 0o644)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
