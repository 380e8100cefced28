// Package testpki is the one certificate factory of the project's tests. It
// is built on package pki, so tests use the certificates `mcc ca init`,
// `mcc issue` and `mcc cert create` make, not look-alikes: a CA from
// pki.InitCA, app leaves from (*pki.CA).Issue (identity URI and build
// metadata as pki/certid defines them), control-channel server and client
// certificates from (*pki.CA).IssueControlCert. What pki deliberately cannot
// make (expired, not yet valid, wrong key usage, weak keys, a root with an
// intermediate, CRLs with chosen dates) is signed here by Sign and CRL, from
// the same templates.
//
// Test code only: no gateway links it (internal/archtest's TestImportRules
// checks).
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
)

// CA is a test certificate authority. CAs made by NewCA are pki CAs with a
// directory (CertFile is pki.CACertFile in it) and issue app leaves and
// control certificates; a CA made by Intermediate has no directory and
// issues app leaves and signed templates only.
type CA struct {
	*pki.CA
	CertPEM  []byte
	CertFile string // "" for an intermediate
}

// NewCA makes a CA named name with pki.InitCA in a fresh temporary
// directory.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCAIn(t.TempDir(), name)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return ca
}

// NewCAIn makes a CA named name with pki.InitCA in dir (which must not hold
// a CA yet), for helpers that report errors instead of failing a test.
func NewCAIn(dir, name string) (*CA, error) {
	ca, err := pki.InitCA(dir, pki.CAOptions{Name: name, ValidFor: 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("creating test CA %q: %w", name, err)
	}
	return &CA{CA: ca, CertPEM: pemBlock("CERTIFICATE", ca.Cert.Raw), CertFile: ca.Path(pki.CACertFile)}, nil
}

// NewRoot makes a self-signed root that may sign one level of intermediate
// CAs (pki's own CAs issue leaves only), for chains presented with an
// intermediate. It has no directory: it signs with Sign and Intermediate.
func NewRoot(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"mcc tests"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testpki: creating root %q: %v", name, err)
	}
	return caFromDER(t, der, key)
}

// Intermediate signs an intermediate CA named name under ca.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	leaf := ca.Sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"mcc tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, key)
	return caFromDER(t, leaf.Cert.Raw, key)
}

func caFromDER(t testing.TB, der []byte, key crypto.Signer) *CA {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: parsing CA: %v", err)
	}
	return &CA{CA: &pki.CA{Cert: cert, Key: key}, CertPEM: pemBlock("CERTIFICATE", der)}
}

// Leaf is an issued certificate with its private key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS#8
}

func newLeaf(cert *x509.Certificate, key crypto.Signer) (*Leaf, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return &Leaf{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", cert.Raw), KeyPEM: pemBlock("PRIVATE KEY", keyDER)}, nil
}

// TLSCertificate returns the leaf (followed by chain, e.g. an intermediate)
// for crypto/tls.
func (l *Leaf) TLSCertificate(chain ...*x509.Certificate) tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// SPKIPin returns the base64 SHA-256 of the leaf's SubjectPublicKeyInfo, the
// form of Envoy's verify_certificate_spki and of fusion's spki_pins.
func (l *Leaf) SPKIPin() string {
	sum := sha256.Sum256(l.Cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WriteFiles writes dir/<name>.pem (0644) and dir/<name>-key.pem (0600) and
// returns their paths.
func (l *Leaf) WriteFiles(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, l.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("writing certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, l.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("writing key: %w", err)
	}
	return certFile, keyFile, nil
}

// Build is the build metadata of the leaves Client issues.
func Build() certid.BuildInfo {
	return certid.BuildInfo{ID: "build-2000", Date: time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Second), User: "ci", Host: "builder-1", SDK: "mcc-sdk/1.4.2"}
}

// IssueApp issues an app build's client certificate with pki's Issue.
func (ca *CA) IssueApp(req pki.IssueRequest) (*Leaf, error) {
	if req.ValidFor == 0 {
		req.ValidFor = time.Until(ca.Cert.NotAfter) - time.Minute
	}
	is, err := ca.Issue(req)
	if err != nil {
		return nil, fmt.Errorf("issuing app certificate: %w", err)
	}
	return newLeaf(is.Cert, is.Key)
}

// Client issues a valid app certificate for fusion set setID and app appID
// (identity URI certid.IdentityURI(setID, appID), build metadata Build()).
func (ca *CA) Client(t testing.TB, setID, appID string) *Leaf {
	t.Helper()
	l, err := ca.IssueApp(pki.IssueRequest{FusionSet: setID, AppID: appID, Build: Build()})
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return l
}

// IssueControl issues a control-channel certificate with pki's
// IssueControlCert (only a CA made by NewCA or NewCAIn can).
func (ca *CA) IssueControl(req pki.ControlRequest) (*Leaf, error) {
	if ca.Dir == "" {
		return nil, errors.New("testpki: control certificates need a CA made by NewCA")
	}
	if req.ValidFor == 0 {
		req.ValidFor = time.Until(ca.Cert.NotAfter) - time.Minute
	}
	c, err := ca.IssueControlCert(req)
	if err != nil {
		return nil, fmt.Errorf("issuing control certificate %q: %w", req.Name, err)
	}
	return newLeaf(c.Cert, c.Key)
}

// Server issues a TLS server certificate for names (DNS names or IP
// addresses; the first is the common name).
func (ca *CA) Server(t testing.TB, names ...string) *Leaf {
	t.Helper()
	l, err := ca.IssueControl(ServerRequest(names...))
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return l
}

// ServerRequest is the control request of a server certificate for names
// (DNS names or IP addresses; the first is the common name).
func ServerRequest(names ...string) pki.ControlRequest {
	req := pki.ControlRequest{Usage: pki.ControlServer}
	if len(names) > 0 {
		req.Name = names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNS = append(req.DNS, n)
		}
	}
	return req
}

// Peer issues a control-channel client certificate (an Envoy talking to
// mcc xds or mcc authz) with common name cn and URI SANs such as
// "spiffe://mcc/envoy/edge".
func (ca *CA) Peer(t testing.TB, cn string, uris ...string) *Leaf {
	t.Helper()
	l, err := ca.IssueControl(pki.ControlRequest{Name: cn, URIs: uris, Usage: pki.ControlClient})
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return l
}

// AppTemplate is the template of a valid app build certificate, the shape
// (*pki.CA).Issue signs, valid from an hour ago for 30 days. Tests change
// one field of it and Sign it to make a certificate with one defect.
func AppTemplate(setID, appID string, b certid.BuildInfo) *x509.Certificate {
	u, err := url.Parse(certid.IdentityURI(setID, appID))
	if err != nil {
		panic("testpki: identity URI: " + err.Error())
	}
	now := time.Now()
	return &x509.Certificate{
		Subject:               certid.Subject(setID, appID, b),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, 30),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
}

// SignTemplate signs tmpl for key's public key (a new P-256 key when key is
// nil) with ca. A nil serial gets a random one; zero validity dates get an
// hour ago to a day from now.
func (ca *CA) SignTemplate(tmpl *x509.Certificate, key crypto.Signer) (*Leaf, error) {
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating key: %w", err)
		}
		key = k
	}
	if tmpl.SerialNumber == nil {
		n, err := randomSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = n
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", tmpl.Subject.CommonName, err)
	}
	return newLeaf(cert, key)
}

// SelfSigned signs tmpl with its own key (a new P-256 key when key is nil),
// for tests that need a certificate no CA vouches for. Defaults as in
// SignTemplate.
func SelfSigned(t testing.TB, tmpl *x509.Certificate, key crypto.Signer) *Leaf {
	t.Helper()
	if key == nil {
		key = NewKey(t)
	}
	self := &CA{CA: &pki.CA{Cert: tmpl, Key: key}}
	return self.Sign(t, tmpl, key)
}

// Sign is SignTemplate failing the test on error.
func (ca *CA) Sign(t testing.TB, tmpl *x509.Certificate, key crypto.Signer) *Leaf {
	t.Helper()
	l, err := ca.SignTemplate(tmpl, key)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return l
}

// Expired is a client certificate for setID/appID whose notAfter passed an
// hour ago.
func (ca *CA) Expired(t testing.TB, setID, appID string) *Leaf {
	t.Helper()
	tmpl := AppTemplate(setID, appID, Build())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().AddDate(0, 0, -40), time.Now().Add(-time.Hour)
	return ca.Sign(t, tmpl, nil)
}

// NotYetValid is a client certificate for setID/appID valid from tomorrow.
func (ca *CA) NotYetValid(t testing.TB, setID, appID string) *Leaf {
	t.Helper()
	tmpl := AppTemplate(setID, appID, Build())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(24*time.Hour), time.Now().AddDate(0, 0, 30)
	return ca.Sign(t, tmpl, nil)
}

// WrongEKU is a client certificate for setID/appID allowed for server
// authentication only.
func (ca *CA) WrongEKU(t testing.TB, setID, appID string) *Leaf {
	t.Helper()
	tmpl := AppTemplate(setID, appID, Build())
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.Sign(t, tmpl, nil)
}

// WeakKey is a client certificate for setID/appID with a 1024-bit RSA key.
func (ca *CA) WeakKey(t testing.TB, setID, appID string) *Leaf {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("testpki: generating RSA key: %v", err)
	}
	return ca.Sign(t, AppTemplate(setID, appID, Build()), k)
}

// CRL returns a PEM CRL signed by ca, valid until nextUpdate (in the past:
// an expired CRL), revoking the given certificates.
func (ca *CA) CRL(t testing.TB, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	thisUpdate := time.Now().Add(-time.Minute)
	if !nextUpdate.After(thisUpdate) {
		thisUpdate = nextUpdate.Add(-time.Hour)
	}
	var entries []x509.RevocationListEntry
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	return ca.SignCRL(t, &x509.RevocationList{ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: entries})
}

// SignCRL signs tmpl (chosen number, dates and entries; a nil Number gets
// a fresh one) with ca and returns it as PEM.
func (ca *CA) SignCRL(t testing.TB, tmpl *x509.RevocationList) []byte {
	t.Helper()
	if tmpl.Number == nil {
		tmpl.Number = big.NewInt(time.Now().UnixNano())
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("testpki: creating CRL: %v", err)
	}
	return pemBlock("X509 CRL", der)
}

// Pool returns a certificate pool holding the CA certificates.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// NewKey returns a fresh ECDSA P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: generating key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := randomSerial()
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return n
}

// randomSerial is a positive 127-bit serial, as RFC 5280 wants.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
