package envoytest

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc/credentials"

	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/pki"
)

// ControlPKI is a throw-away CA for the control channel between Envoy and
// mcc, made by internal/testpki with package pki (the certificates
// `mcc cert create` makes), for tests that stand in for Envoy over mTLS.
// Files are written under Dir.
type ControlPKI struct {
	Dir    string
	CAFile string

	ca *testpki.CA
}

// NewControlPKI makes a CA named name (its pki directory is dir/<name>-ca)
// and writes its certificate to dir/<name>-ca.pem.
func NewControlPKI(dir, name string) (*ControlPKI, error) {
	ca, err := testpki.NewCAIn(filepath.Join(dir, name+"-ca"), name)
	if err != nil {
		return nil, err
	}
	p := &ControlPKI{Dir: dir, CAFile: filepath.Join(dir, name+"-ca.pem"), ca: ca}
	if err := os.WriteFile(p.CAFile, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing CA certificate: %w", err)
	}
	return p, nil
}

// Server issues a server certificate named name for localhost, 127.0.0.1
// and ::1 and returns its certificate and key files.
func (p *ControlPKI) Server(name string) (certFile, keyFile string, err error) {
	req := testpki.ServerRequest("localhost", "127.0.0.1", "::1")
	req.Name = name
	return p.issue(req)
}

// Client issues a client certificate whose identity is uri (a URI SAN such
// as spiffe://mcc/envoy/mcc-edge; CN name when uri is "").
func (p *ControlPKI) Client(name, uri string) (certFile, keyFile string, err error) {
	req := pki.ControlRequest{Name: name, Usage: pki.ControlClient}
	if uri != "" {
		req.URIs = []string{uri}
	}
	return p.issue(req)
}

func (p *ControlPKI) issue(req pki.ControlRequest) (string, string, error) {
	l, err := p.ca.IssueControl(req)
	if err != nil {
		return "", "", err
	}
	return l.WriteFiles(p.Dir, req.Name)
}

// ClientCredentials are gRPC client credentials that trust p's CA for the
// server and present the given client certificate (none when certFile is
// ""), as Envoy's authz cluster does with its transport_socket.
func (p *ControlPKI) ClientCredentials(certFile, keyFile string) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{RootCAs: testpki.Pool(p.ca), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return credentials.NewTLS(cfg), nil
}
