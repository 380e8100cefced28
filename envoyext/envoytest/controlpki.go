package envoytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// ControlPKI is a throw-away CA for the control channel between Envoy and
// mcc (the certificates `mcc cert create` makes), for tests that stand in
// for Envoy over mTLS. Files are written under Dir.
type ControlPKI struct {
	Dir    string
	CAFile string

	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewControlPKI makes a CA named name and writes its certificate to
// dir/<name>-ca.pem.
func NewControlPKI(dir, name string) (*ControlPKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &ControlPKI{Dir: dir, CAFile: filepath.Join(dir, name+"-ca.pem"), ca: ca, key: key}
	p.serial.Store(1)
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// Server issues a server certificate for localhost, 127.0.0.1 and ::1 and
// returns its certificate and key files.
func (p *ControlPKI) Server(name string) (certFile, keyFile string, err error) {
	return p.issue(name, "", true)
}

// Client issues a client certificate whose identity is uri (a URI SAN such
// as spiffe://mcc/envoy/mcc-edge; CN name when uri is "").
func (p *ControlPKI) Client(name, uri string) (certFile, keyFile string, err error) {
	return p.issue(name, uri, false)
}

func (p *ControlPKI) issue(name, uri string, server bool) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			return "", "", fmt.Errorf("identity %q: %w", uri, err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile := filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// ClientCredentials are gRPC client credentials that trust p's CA for the
// server and present the given client certificate (none when certFile is
// ""), as Envoy's authz cluster does with its transport_socket.
func (p *ControlPKI) ClientCredentials(certFile, keyFile string) (credentials.TransportCredentials, error) {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if certFile != "" {
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return credentials.NewTLS(cfg), nil
}
