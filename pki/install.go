package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

// Install certificate bounds. The lifetime is short because an install
// renews it by enrolling again; the CSR comes from the device (an attacker
// can send anything), so its size is bounded before it is parsed.
const (
	DefaultInstallValidity = 24 * time.Hour
	MaxInstallValidity     = 30 * 24 * time.Hour
	MaxInstallCSRSize      = 4 << 10
	// installClockSkew backdates NotBefore so a device whose clock runs
	// a little slow accepts its new certificate at once.
	installClockSkew = time.Minute
)

// InstallRequest describes one app install's certificate, issued for a key
// the device made (Android Keystore, the Secure Enclave) and proved with a
// CSR. Set exactly one of CSR, ParsedCSR and PublicKey.
type InstallRequest struct {
	CSR       []byte                   // PKCS #10 DER, at most MaxInstallCSRSize bytes
	ParsedCSR *x509.CertificateRequest // already parsed: its Raw is bounded and parsed again
	// PublicKey is the key of a renewal that keeps its key: the device
	// proved it holds it by signing the TLS handshake with it, which is
	// what a CSR's signature would prove.
	PublicKey *ecdsa.PublicKey
	FusionSet string // fusion set id: the identity URI's host
	AppID     string // app id: the identity URI's path
	// Build is copied by the caller from the build certificate the install
	// presented; Kind and InstallID are set by IssueInstall.
	Build     certid.BuildInfo
	InstallID string        // certid.CheckInstallID
	ValidFor  time.Duration // DefaultInstallValidity when zero, at most MaxInstallValidity
	Now       time.Time     // issuance time; the CA's clock when zero
	// NotAfterMax, when set, is the latest end the certificate may have:
	// the end of the build certificate the install enrolled with, so
	// installs cannot outlive their build.
	NotAfterMax time.Time
}

// InstallCert is a newly issued install certificate. The private key stays
// on the device.
type InstallCert struct {
	Cert  *x509.Certificate
	DER   []byte
	PEM   []byte
	Build certid.BuildInfo // Kind KindInstall, with the install id
}

// IssueInstall signs an install certificate for the CSR's public key. The
// CA writes the identity: the CSR's subject, SANs, extensions and
// attributes are ignored, so a device cannot choose another identity. The
// key must be ECDSA P-256, the one curve both Android Keystore and the
// Secure Enclave make. The certificate has a random positive 128-bit
// serial, NotBefore one minute before now, NotAfter now plus the lifetime
// (never after the CA's NotAfter), EKU clientAuth, KeyUsage
// digitalSignature, is not a CA, has exactly one identity URI SAN and the
// Subject of certid.Subject with install metadata.
func (ca *CA) IssueInstall(req InstallRequest) (*InstallCert, error) {
	pub, err := installKey(req.CSR, req.ParsedCSR, req.PublicKey)
	if err != nil {
		return nil, err
	}
	uri, err := identityURI(req.FusionSet, req.AppID)
	if err != nil {
		return nil, err
	}
	if err := checkBuild(req.Build); err != nil {
		return nil, err
	}
	if err := certid.CheckInstallID(req.InstallID); err != nil {
		return nil, err
	}
	build := req.Build
	build.Date = build.Date.UTC().Truncate(time.Second)
	build.Kind, build.InstallID = certid.KindInstall, req.InstallID
	validFor := req.ValidFor
	if validFor == 0 {
		validFor = DefaultInstallValidity
	}
	if validFor < 0 || validFor > MaxInstallValidity {
		return nil, fmt.Errorf("install certificate lifetime %s is out of range (more than 0, at most %s)", validFor, MaxInstallValidity)
	}
	now := req.Now
	if now.IsZero() {
		now = ca.now()
	}
	if now.Before(ca.Cert.NotBefore) || !now.Before(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("the CA is valid only from %s to %s",
			ca.Cert.NotBefore.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validFor)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !req.NotAfterMax.IsZero() && notAfter.After(req.NotAfterMax) {
		if !now.Before(req.NotAfterMax) {
			return nil, fmt.Errorf("the build certificate ended at %s", req.NotAfterMax.UTC().Format(time.RFC3339))
		}
		notAfter = req.NotAfterMax
	}
	cert, err := ca.signClientLeaf(clientLeaf{
		what: "install certificate", pub: pub,
		subject:  certid.Subject(req.FusionSet, req.AppID, build),
		identity: uri, setID: req.FusionSet, appID: req.AppID,
		notBefore: now.Add(-installClockSkew), notAfter: notAfter,
	})
	if err != nil {
		return nil, err
	}
	// Prove the metadata reads back exactly as the gateway will read it.
	if got, ok, err := certid.ParseBuildInfo(cert); err != nil || !ok || got != build {
		return nil, fmt.Errorf("install metadata does not read back: %v", err)
	}
	return &InstallCert{Cert: cert, DER: cert.Raw, PEM: pemEncode("CERTIFICATE", cert.Raw), Build: build}, nil
}

// installKey parses and checks the CSR and returns its ECDSA P-256 public
// key. Only the key and the proof of possession are taken from the CSR. A
// parsed CSR is parsed again from its Raw bytes, so what is checked is what
// was signed, whatever the caller's struct says.
func installKey(der []byte, csr *x509.CertificateRequest, key *ecdsa.PublicKey) (*ecdsa.PublicKey, error) {
	if n := btoi(der != nil) + btoi(csr != nil) + btoi(key != nil); n != 1 {
		return nil, errors.New("install request: set exactly one of the CSR's DER, the parsed CSR and the public key")
	}
	if key != nil {
		if key.Curve != elliptic.P256() {
			return nil, errors.New("install key must be ECDSA P-256 (what Android Keystore and the Secure Enclave make)")
		}
		return key, nil
	}
	if csr != nil {
		der = csr.Raw
	}
	if len(der) == 0 {
		return nil, errors.New("CSR is empty")
	}
	if len(der) > MaxInstallCSRSize {
		return nil, fmt.Errorf("CSR is larger than %d bytes", MaxInstallCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("CSR key must be ECDSA P-256 (what Android Keystore and the Secure Enclave make)")
	}
	return pub, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
