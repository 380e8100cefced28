package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

// DefaultLeafValidity is how long an app build's certificate is valid unless
// told otherwise.
const DefaultLeafValidity = 365 * 24 * time.Hour

// maxFieldLen bounds each build metadata field so the description attribute
// stays under X.520's 1024-character upper bound.
const maxFieldLen = 128

// IssueRequest describes one app build's client certificate.
type IssueRequest struct {
	FusionSet string           // fusion set id: the identity URI's host
	AppID     string           // app id: the identity URI's path
	Build     certid.BuildInfo // build id (required), date, user, host, SDK
	ValidFor  time.Duration    // DefaultLeafValidity when zero
}

// Issued is a newly issued client certificate and its private key.
type Issued struct {
	Cert  *x509.Certificate
	Key   *ecdsa.PrivateKey // private
	CA    *x509.Certificate
	Build certid.BuildInfo
}

// Issue creates an app build's client certificate: a fresh ECDSA P-256 key,
// a random 128-bit serial, EKU clientAuth, KeyUsage digitalSignature, not a
// CA, exactly one URI SAN certid.IdentityURI(set, app), and the Subject of
// certid.Subject (CN app, O set, serialNumber build id, description build
// metadata). Nothing is written to disk.
func (ca *CA) Issue(req IssueRequest) (*Issued, error) {
	uri, err := identityURI(req.FusionSet, req.AppID)
	if err != nil {
		return nil, err
	}
	if err := checkBuild(req.Build); err != nil {
		return nil, err
	}
	// The certificate carries the date at second precision; keep the same
	// value everywhere (record, audit log) so they agree.
	req.Build.Date = req.Build.Date.UTC().Truncate(time.Second)
	if req.ValidFor == 0 {
		req.ValidFor = DefaultLeafValidity
	}
	if req.ValidFor < time.Minute {
		return nil, fmt.Errorf("validity %s is too short", req.ValidFor)
	}
	now := ca.now()
	notBefore := now.Add(-5 * time.Minute) // tolerate device clock skew
	notAfter := now.Add(req.ValidFor)
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("certificate would be valid until %s, after the CA expires (%s); shorten --valid-for",
			notAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(ca.Cert.NotBefore) {
		return nil, fmt.Errorf("the CA is not valid before %s", ca.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating client key: %w", err)
	}
	cert, err := ca.signClientLeaf(clientLeaf{what: "client certificate", pub: key.Public(),
		subject: certid.Subject(req.FusionSet, req.AppID, req.Build), identity: uri,
		setID: req.FusionSet, appID: req.AppID, notBefore: notBefore, notAfter: notAfter})
	if err != nil {
		return nil, err
	}
	if _, ok, err := certid.ParseBuildInfo(cert); err != nil || !ok {
		return nil, fmt.Errorf("build metadata does not read back: %v", err)
	}
	return &Issued{Cert: cert, Key: key, CA: ca.Cert, Build: req.Build}, nil
}

// identityURI builds and checks the identity URI. The ids follow the
// fusion set loader's rules (certid.CheckSetID, certid.CheckAppID), so no
// certificate is issued for an id no fusion file could name, and must
// survive a round trip through URL parsing unchanged, since gateways
// compare the SAN as a string (Envoy) and as parsed host and path
// (certid.Identity).
func identityURI(setID, appID string) (*url.URL, error) {
	if err := certid.CheckSetID(setID); err != nil {
		return nil, err
	}
	if err := certid.CheckAppID(appID); err != nil {
		return nil, err
	}
	s := certid.IdentityURI(setID, appID)
	u, err := url.Parse(s)
	if err != nil || u.Host != setID || u.Path != "/"+appID || u.String() != s {
		return nil, fmt.Errorf("identity URI %q does not round-trip", s)
	}
	return u, nil
}

func checkBuild(b certid.BuildInfo) error {
	if b.ID == "" {
		return errors.New("build id is empty")
	}
	for _, f := range []struct{ name, v string }{{"build id", b.ID}, {"build user", b.User}, {"build host", b.Host}, {"SDK version", b.SDK}} {
		if err := CheckBuildField(f.v); err != nil {
			return fmt.Errorf("%s %w", f.name, err)
		}
	}
	return nil
}

// CheckBuildField checks one build metadata value (id, user, host, SDK
// version) the way Issue does, so callers that take the values from a
// request can name the field that is wrong. The error reads after the
// field's name ("is longer than 128 bytes").
func CheckBuildField(v string) error {
	if len(v) > maxFieldLen {
		return fmt.Errorf("is longer than %d bytes", maxFieldLen)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}
