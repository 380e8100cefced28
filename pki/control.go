package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

// Control-channel certificates authenticate mcc's own gRPC and HTTP
// channels (mcc xds, mcc authz and Envoy talking to them over mTLS). They
// come from a CA of their own (`mcc ca init --dir control-ca`), never from a
// CA that a fusion set trusts for app builds: a gateway that trusts the
// app CA would otherwise accept a control certificate as an app client.

// DefaultControlValidity is how long a control-channel certificate is valid
// unless told otherwise: short, since renewing it is one command.
const DefaultControlValidity = 90 * 24 * time.Hour

// ControlUsage is what a control-channel certificate may do.
type ControlUsage string

// Control certificate usages (the EKU).
const (
	ControlServer ControlUsage = "server" // EKU serverAuth
	ControlClient ControlUsage = "client" // EKU clientAuth
)

// maxControlSANs bounds the SANs of one certificate (each kind counted
// together); a control certificate names a handful of hosts.
const maxControlSANs = 64

// ControlRequest describes one control-channel certificate.
type ControlRequest struct {
	Name     string   // Subject CN (required): e.g. mcc-xds, envoy-edge
	DNS      []string // DNS SANs
	IPs      []net.IP // IP SANs
	URIs     []string // URI SANs, e.g. spiffe://mcc/envoy/mcc-edge
	Usage    ControlUsage
	ValidFor time.Duration // DefaultControlValidity when zero
}

// ControlCert is a newly issued control-channel certificate and its key.
type ControlCert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey // private
	CA   *x509.Certificate
}

// CertPEM is the certificate as PEM (the leaf only; peers trust the CA
// certificate, ca.pem of the control CA).
func (c *ControlCert) CertPEM() []byte { return pemEncode("CERTIFICATE", c.Cert.Raw) }

// KeyPEM is the private key as PKCS#8 PEM. Private.
func (c *ControlCert) KeyPEM() ([]byte, error) { return marshalKeyPEM(c.Key) }

// TLSCertificate is the certificate and key for a tls.Config.
func (c *ControlCert) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// IssueControlCert loads the CA in caDir and issues a control-channel
// certificate (see CA.IssueControlCert). Tests of other packages use it to
// build real mTLS setups.
func IssueControlCert(caDir string, req ControlRequest) (*ControlCert, error) {
	ca, err := LoadCA(caDir)
	if err != nil {
		return nil, err
	}
	return ca.IssueControlCert(req)
}

// IssueControlCert issues a control-channel certificate: a fresh ECDSA
// P-256 key, a random 128-bit serial, KeyUsage digitalSignature, CA:FALSE,
// EKU serverAuth or clientAuth, Subject CN req.Name and exactly the SANs
// asked for. A server certificate needs at least one DNS or IP SAN (TLS
// clients verify the host name against them). URI SANs with mcc's app
// identity scheme are refused, so a control certificate can never pass as
// an app build's. The issuance is appended to the CA's audit log as an
// "issue-control" entry; nothing else is written.
func (ca *CA) IssueControlCert(req ControlRequest) (*ControlCert, error) {
	tmpl, err := controlTemplate(req)
	if err != nil {
		return nil, err
	}
	if req.ValidFor == 0 {
		req.ValidFor = DefaultControlValidity
	}
	if req.ValidFor < time.Minute {
		return nil, fmt.Errorf("validity %s is too short", req.ValidFor)
	}
	unlock, err := lockDir(ca.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if _, err := ca.auditHead(AuditIssueControl); err != nil {
		return nil, err
	}
	// One CA per purpose: if app builds' certificates (extractable from
	// every installed app) came from this CA, a server trusting it for
	// control channels would let any app user in.
	if app, err := auditHasAction(ca.Path(AuditFile), AuditIssue); err != nil {
		return nil, err
	} else if app {
		return nil, fmt.Errorf("CA %s has issued app build certificates; control-channel certificates need a CA of their own "+
			"(mcc ca init --dir control-ca), or every app bundle would be trusted on the control channel", ca.Dir)
	}
	now := ca.now()
	tmpl.NotBefore = now.Add(-5 * time.Minute) // tolerate clock skew between hosts
	tmpl.NotAfter = now.Add(req.ValidFor)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("certificate would be valid until %s, after the CA expires (%s); shorten the validity",
			tmpl.NotAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(ca.Cert.NotBefore) {
		return nil, fmt.Errorf("the CA is not valid before %s", ca.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing control certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new control certificate: %w", err)
	}
	if _, err := ca.appendAudit(AuditEntry{
		Time:     now,
		Action:   AuditIssueControl,
		Serial:   FormatSerial(cert.SerialNumber),
		SHA256:   Fingerprint(cert.Raw),
		NotAfter: cert.NotAfter.UTC(),
		Detail:   controlDetail(req.Usage, cert),
	}); err != nil {
		return nil, err
	}
	return &ControlCert{Cert: cert, Key: key, CA: ca.Cert}, nil
}

// controlTemplate checks req and builds the certificate template (without
// serial and validity).
func controlTemplate(req ControlRequest) (*x509.Certificate, error) {
	name := req.Name
	if strings.TrimSpace(name) == "" {
		return nil, errors.New("control certificate: name is empty")
	}
	if len(name) > 64 { // X.520 ub-common-name
		return nil, fmt.Errorf("control certificate: name %q is longer than 64 characters", name)
	}
	if err := checkPrintable("name", name); err != nil {
		return nil, err
	}
	if n := len(req.DNS) + len(req.IPs) + len(req.URIs); n > maxControlSANs {
		return nil, fmt.Errorf("control certificate: %d SANs, at most %d", n, maxControlSANs)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	switch req.Usage {
	case ControlServer:
		if len(req.DNS)+len(req.IPs) == 0 {
			return nil, errors.New("control certificate: a server certificate needs at least one DNS name or IP address (clients check the host they dial against them)")
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case ControlClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, fmt.Errorf("control certificate: usage %q, want %q or %q", req.Usage, ControlServer, ControlClient)
	}
	for _, h := range req.DNS {
		if err := checkDNSName(h); err != nil {
			return nil, err
		}
		tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
	}
	for _, ip := range req.IPs {
		if ip == nil || (ip.To4() == nil && ip.To16() == nil) {
			return nil, errors.New("control certificate: invalid IP address")
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	for _, s := range req.URIs {
		u, err := url.Parse(s)
		if err == nil && strings.EqualFold(u.Scheme, certid.Scheme) {
			return nil, fmt.Errorf("control certificate: URI %q uses the app identity scheme %q; control certificates must not look like app builds' (use e.g. spiffe://)", s, certid.Scheme)
		}
		if err != nil || u.Scheme == "" || !u.IsAbs() || u.String() != s {
			return nil, fmt.Errorf("control certificate: URI %q is not an absolute URI in canonical form (e.g. spiffe://mcc/envoy/edge)", s)
		}
		if err := checkPrintable("URI", s); err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return tmpl, nil
}

// checkDNSName accepts host names (letters, digits, '-', '.') and one
// leading "*." wildcard label.
func checkDNSName(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(h) > 253 || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("control certificate: DNS name %q is not a host name", h)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return fmt.Errorf("control certificate: DNS name %q is not a host name (letters, digits, '-', '.'; an IP address goes to --ip)", h)
		}
	}
	if net.ParseIP(h) != nil {
		return fmt.Errorf("control certificate: %q is an IP address, not a DNS name (use --ip)", h)
	}
	return nil
}

func checkPrintable(what, s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("control certificate: %s contains a control character", what)
		}
	}
	return nil
}

// controlDetail is the audit entry's description of a control certificate:
// usage, name and SANs, so the log says what each one may be used for.
func controlDetail(usage ControlUsage, c *x509.Certificate) string {
	parts := []string{string(usage), "cn=" + c.Subject.CommonName}
	for _, d := range c.DNSNames {
		parts = append(parts, "dns="+d)
	}
	for _, ip := range c.IPAddresses {
		parts = append(parts, "ip="+ip.String())
	}
	for _, u := range c.URIs {
		parts = append(parts, "uri="+u.String())
	}
	return strings.Join(parts, " ")
}

// CheckControlOutputs vets the output paths before anything is issued (so
// a refused write leaves no audit entry): two distinct paths, in existing
// directories, and not existing yet unless overwrite is set (renewal).
func CheckControlOutputs(certPath, keyPath string, overwrite bool) error {
	if certPath == "" || keyPath == "" {
		return errors.New("certificate and key paths are required")
	}
	ca, _ := filepath.Abs(certPath)
	ka, _ := filepath.Abs(keyPath)
	if ca == ka {
		return fmt.Errorf("certificate and key would both be written to %s", certPath)
	}
	for _, p := range []string{certPath, keyPath} {
		if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s: directory %s does not exist", p, filepath.Dir(p))
		}
		exists, err := fileExists(p)
		if err != nil {
			return err
		}
		if exists && !overwrite {
			return fmt.Errorf("%s already exists; refusing to overwrite it (pass --force to renew)", p)
		}
	}
	return nil
}

// WriteFiles writes the certificate (0644) and the key (0600) atomically
// (temporary file and rename: a server reloading them never reads half a
// file). It refuses to replace existing files unless overwrite is set
// (renewal).
func (c *ControlCert) WriteFiles(certPath, keyPath string, overwrite bool) error {
	if err := CheckControlOutputs(certPath, keyPath, overwrite); err != nil {
		return err
	}
	keyPEM, err := c.KeyPEM()
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, modePrivate); err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	if err := writeFileAtomic(certPath, c.CertPEM(), modePublic); err != nil {
		return fmt.Errorf("writing certificate: %w", err)
	}
	return nil
}
