package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/pki"
)

// certCreate runs `mcc cert create` and fails the test on error.
func certCreate(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := runCLI(t, append([]string{"cert", "create"}, args...)...)
	if code != 0 {
		t.Fatalf("mcc cert create %v: exit %d: %s", args, code, stderr)
	}
	return stdout
}

// TestCertCreateMutualTLS makes the documented server and client
// certificates with the CLI and runs a real mutual TLS handshake, both
// sides verifying against the control CA, then checks the negatives: a
// client certificate cannot serve, a server certificate cannot be a client,
// and a host name outside the SANs fails.
func TestCertCreateMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "control-ca")
	if code, _, stderr := runCLI(t, "ca", "init", "--dir", caDir); code != 0 {
		t.Fatal(stderr)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	out := certCreate(t, "--ca", caDir, "--name", "mcc-xds", "--dns", "localhost", "--ip", "127.0.0.1", "--server",
		"--out", p("xds.pem"), "--key-out", p("xds-key.pem"))
	for _, want := range []string{`issued server certificate "mcc-xds"`, "DNS:localhost, IP:127.0.0.1", "xds-key.pem  [PRIVATE 0600]", "ca.pem"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	certCreate(t, "--ca", caDir, "--name", "envoy-edge", "--uri", "spiffe://mcc/envoy/mcc-edge", "--client",
		"--out", p("envoy.pem"), "--key-out", p("envoy-key.pem"), "--days", "30")
	for _, k := range []string{"xds-key.pem", "envoy-key.pem"} {
		if fi, err := os.Stat(p(k)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", k, fi.Mode().Perm(), err)
		}
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pkiReadFile(t, filepath.Join(caDir, pki.CACertFile)))
	serverCert, err := tls.LoadX509KeyPair(p("xds.pem"), p("xds-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.LoadX509KeyPair(p("envoy.pem"), p("envoy-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// Good case: mTLS, the server sees the client's URI SAN.
	peer, err := ctlHandshake(t, serverCert, clientCert, pool, "localhost")
	if err != nil {
		t.Fatalf("mTLS handshake: %v", err)
	}
	if len(peer.URIs) != 1 || peer.URIs[0].String() != "spiffe://mcc/envoy/mcc-edge" || peer.Subject.CommonName != "envoy-edge" {
		t.Errorf("server saw client %v %v", peer.Subject, peer.URIs)
	}
	if d := peer.NotAfter.Sub(peer.NotBefore).Hours() / 24; d < 29.9 || d > 30.1 {
		t.Errorf("--days 30 gave %.2f days", d)
	}
	if _, err := ctlHandshake(t, serverCert, clientCert, pool, "127.0.0.1"); err != nil {
		t.Errorf("mTLS to the IP SAN: %v", err)
	}
	// The client certificate cannot act as a server (EKU clientAuth only).
	if _, err := ctlHandshake(t, clientCert, clientCert, pool, "localhost"); err == nil {
		t.Error("a client certificate served TLS")
	}
	// The server certificate cannot act as a client (EKU serverAuth only).
	if _, err := ctlHandshake(t, serverCert, serverCert, pool, "localhost"); err == nil {
		t.Error("a server certificate authenticated as a client")
	}
	// A name outside the SANs fails host name verification.
	if _, err := ctlHandshake(t, serverCert, clientCert, pool, "xds.example.com"); err == nil {
		t.Error("host name outside the SANs accepted")
	}

	// OpenSSL reads what we claim.
	text := opensslOut(t, "x509", "-in", p("xds.pem"), "-noout", "-text")
	for _, want := range []string{"TLS Web Server Authentication", "DNS:localhost, IP Address:127.0.0.1", "CA:FALSE", "prime256v1", "Digital Signature"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(text, "Subject: CN = mcc-xds") && !strings.Contains(text, "Subject: CN=mcc-xds") {
		t.Errorf("openssl x509 -text: subject is not CN mcc-xds:\n%s", text)
	}
	if strings.Contains(text, "Client Authentication") {
		t.Error("server certificate also carries clientAuth")
	}
	text = opensslOut(t, "x509", "-in", p("envoy.pem"), "-noout", "-text")
	for _, want := range []string{"TLS Web Client Authentication", "URI:spiffe://mcc/envoy/mcc-edge", "CA:FALSE"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
	opensslOut(t, "verify", "-CAfile", filepath.Join(caDir, pki.CACertFile), "-purpose", "sslserver", p("xds.pem"))
	opensslOut(t, "verify", "-CAfile", filepath.Join(caDir, pki.CACertFile), "-purpose", "sslclient", p("envoy.pem"))

	// Each issuance is its own audit entry kind, and the log verifies.
	entries, err := pki.ReadAudit(filepath.Join(caDir, pki.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || entries[1].Action != pki.AuditIssueControl || entries[2].Action != pki.AuditIssueControl ||
		!strings.Contains(entries[1].Detail, "server cn=mcc-xds dns=localhost ip=127.0.0.1") ||
		!strings.Contains(entries[2].Detail, "client cn=envoy-edge uri=spiffe://mcc/envoy/mcc-edge") {
		t.Errorf("audit entries: %+v", entries)
	}
	if code, stdout, stderr := runCLI(t, "ca", "audit", "verify", "--dir", caDir); code != 0 || !strings.Contains(stdout, "3 entries") {
		t.Errorf("audit verify: %d %q %q", code, stdout, stderr)
	}

	// Existing files are kept unless --force (renewal).
	before := pkiReadFile(t, p("xds-key.pem"))
	code, _, stderr := runCLI(t, "cert", "create", "--ca", caDir, "--name", "mcc-xds", "--dns", "localhost", "--server", "--out", p("xds.pem"), "--key-out", p("xds-key.pem"))
	wantOneLineError(t, code, stderr, 1, "already exists")
	if string(pkiReadFile(t, p("xds-key.pem"))) != string(before) {
		t.Error("refused issuance replaced the key")
	}
	if n, _ := pki.ReadAudit(filepath.Join(caDir, pki.AuditFile)); len(n) != 3 {
		t.Errorf("a refused issuance was audited: %d entries", len(n))
	}
	certCreate(t, "--ca", caDir, "--name", "mcc-xds", "--dns", "localhost", "--server", "--out", p("xds.pem"), "--key-out", p("xds-key.pem"), "--force")
	if string(pkiReadFile(t, p("xds-key.pem"))) == string(before) {
		t.Error("--force did not renew the key")
	}
}

// ctlHandshake runs a real TLS handshake over loopback: a server presenting
// serverCert and requiring a client certificate from pool, and a client
// presenting clientCert and verifying the server as host against pool.
// It returns the client certificate the server verified.
func ctlHandshake(t *testing.T, serverCert, clientCert tls.Certificate, pool *x509.CertPool, host string) (*x509.Certificate, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		peer *x509.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- result{nil, err}
			return
		}
		io.WriteString(tc, "ok")
		done <- result{tc.ConnectionState().PeerCertificates[0], nil}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{clientCert},
		RootCAs:      pool,
		ServerName:   host,
		MinVersion:   tls.VersionTLS12,
	})
	if err == nil {
		// TLS 1.3 reports a rejected client certificate only on the first read.
		buf := make([]byte, 2)
		_, err = io.ReadFull(conn, buf)
		conn.Close()
	}
	r := <-done
	return r.peer, errors.Join(err, r.err)
}

func opensslOut(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl binary not found (install it: apt-get install -y openssl): %v", err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestCertCreateRefusals covers bad input: one line each, nothing written.
func TestCertCreateRefusals(t *testing.T) {
	caDir := newCADir(t)
	dir := t.TempDir()
	out, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	base := []string{"cert", "create", "--ca", caDir, "--out", out, "--key-out", key}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--name", "x", "--server"}, 2, "--server needs at least one --dns or --ip"},
		{[]string{"--name", "x", "--dns", "a", "--server", "--client"}, 2, "exactly one of --server and --client"},
		{[]string{"--name", "x", "--dns", "a"}, 2, "exactly one of --server and --client"},
		{[]string{"--dns", "a", "--server"}, 2, "--name is required"},
		{[]string{"--name", "x", "--ip", "localhost", "--server"}, 2, `--ip "localhost" is not an IP address`},
		{[]string{"--name", "x", "--dns", "a", "--server", "--days", "0"}, 2, "--days must be positive"},
		{[]string{"--name", "x", "--dns", "bad host", "--server"}, 1, "is not a host name"},
		{[]string{"--name", "x", "--dns", "127.0.0.1", "--server"}, 1, "use --ip"},
		{[]string{"--name", "x", "--uri", "mcc://bank-prod/com.example.bank", "--client"}, 1, "app identity scheme"},
		{[]string{"--name", "x", "--uri", "not a uri", "--client"}, 1, "not an absolute URI"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, append(base, tc.args...)...)
			wantOneLineError(t, code, stderr, tc.code, tc.want)
			if _, err := os.Stat(key); err == nil {
				t.Error("key written despite the error")
			}
		})
	}
	// A CA that issued app builds does not issue control certificates, and
	// the reverse: one CA per purpose.
	if code, _, stderr := runCLI(t, issueArgs(caDir, filepath.Join(dir, "app.p12"))...); code != 0 {
		t.Fatal(stderr)
	}
	code, _, stderr := runCLI(t, append(base, "--name", "x", "--dns", "localhost", "--server")...)
	wantOneLineError(t, code, stderr, 1, "control-channel certificates need a CA of their own")

	ctlCA := newCADir(t)
	certCreate(t, "--ca", ctlCA, "--name", "x", "--dns", "localhost", "--server", "--out", out, "--key-out", key)
	code, _, stderr = runCLI(t, issueArgs(ctlCA, filepath.Join(dir, "app2.p12"))...)
	wantOneLineError(t, code, stderr, 1, "app builds need a CA of their own")
}

// TestIssueControlCertForOtherPackages shows the pki call other packages'
// tests use for real mTLS setups.
func TestIssueControlCertForOtherPackages(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	if _, err := pki.InitCA(caDir, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	srv, err := pki.IssueControlCert(caDir, pki.ControlRequest{Name: "srv", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.ControlServer})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := pki.IssueControlCert(caDir, pki.ControlRequest{Name: "cli", URIs: []string{"spiffe://mcc/test"}, Usage: pki.ControlClient})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.CA)
	if _, err := ctlHandshake(t, srv.TLSCertificate(), cli.TLSCertificate(), pool, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}
