package attestation

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Limits on the chain an attacker sends.
const (
	MaxChainLength = 10
	MinChainLength = 3 // leaf, attestation certificate, root: the shortest chain Android produces
	MaxCertSize    = 16 << 10
)

// oidSerialNumber is the X.520 serialNumber attribute that names the
// intermediates of factory-provisioned chains.
var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

// AndroidVerifier verifies Android Key Attestation certificate chains.
type AndroidVerifier struct {
	roots  []*x509.Certificate
	status *StatusList
	now    func() time.Time
}

// AndroidOption configures an AndroidVerifier.
type AndroidOption func(*AndroidVerifier)

// WithRoots replaces Google's published roots (GoogleRoots) as trust anchors.
func WithRoots(roots []*x509.Certificate) AndroidOption {
	return func(v *AndroidVerifier) { v.roots = roots }
}

// WithStatusList refuses chains with a certificate on the list.
func WithStatusList(l *StatusList) AndroidOption {
	return func(v *AndroidVerifier) { v.status = l }
}

// WithClock sets the time validity periods are checked at.
func WithClock(now func() time.Time) AndroidOption {
	return func(v *AndroidVerifier) { v.now = now }
}

// NewAndroidVerifier returns a verifier trusting GoogleRoots unless WithRoots
// says otherwise.
func NewAndroidVerifier(opts ...AndroidOption) (*AndroidVerifier, error) {
	v := &AndroidVerifier{now: time.Now}
	for _, o := range opts {
		o(v)
	}
	if v.roots == nil {
		v.roots = GoogleRoots()
	}
	if len(v.roots) == 0 {
		return nil, errors.New("android key attestation: no trust anchors")
	}
	return v, nil
}

// Format implements Verifier.
func (v *AndroidVerifier) Format() Format { return FormatAndroidKey }

// Verify implements Verifier. The checks run in the order of
// docs/attestation.md; the first that fails decides the error.
func (v *AndroidVerifier) Verify(req Request) (*Result, error) {
	chain, err := splitChain(req.Attestation)
	if err != nil {
		return nil, err
	}
	if err := v.verifyChain(chain); err != nil {
		return nil, err
	}
	serials := make([]string, len(chain))
	for i, c := range chain {
		serials[i] = c.SerialNumber.Text(16)
	}
	if v.status != nil {
		for i, s := range serials {
			if st, listed := v.status.Status(s); listed {
				return nil, refuse(KindRevoked, "certificate %d of the chain (serial %s) is %s", i, s, quote(st))
			}
		}
	}
	extDER, err := keyDescriptionOf(chain)
	if err != nil {
		return nil, err
	}
	kd, err := ParseAndroidKeyDescription(extDER)
	if err != nil {
		return nil, refuseWrap(KindMalformed, err, "android key attestation")
	}
	if len(req.Challenge) == 0 {
		return nil, refuse(KindChallengeMismatch, "no challenge is bound to this enrollment")
	}
	if subtle.ConstantTimeCompare(kd.AttestationChallenge, req.Challenge) != 1 {
		return nil, refuse(KindChallengeMismatch, "the attested challenge is not this enrollment's")
	}
	if !sameKey(chain[0].PublicKey, req.PublicKey) {
		return nil, refuse(KindKeyMismatch, "the attested key is not the CSR's key")
	}
	level := kd.AttestationSecurityLevel
	if kd.KeyMintSecurityLevel.rank() < level.rank() {
		level = kd.KeyMintSecurityLevel
	}
	if min := req.Expect.minLevel(); !level.AtLeast(min) {
		return nil, refuse(KindSecurityLevel, "key held at %s, the set requires %s", level, min)
	}
	appID, source := kd.Hardware.AppID, "hardware"
	if appID == nil {
		appID, source = kd.Software.AppID, "software"
	}
	if appID == nil {
		return nil, refuse(KindPackageNotAllowed, "the attestation names no application (no attestationApplicationId)")
	}
	pkg, ok := allowedPackage(appID.Packages, req.Expect.PackageNames)
	if !ok {
		return nil, refuse(KindPackageNotAllowed, "attested %s", describePackages(appID.Packages))
	}
	digests, ok := allowedDigests(appID.SignatureDigests, req.Expect.SigningCertDigests)
	if !ok {
		return nil, refuse(KindDigestNotAllowed, "none of the %d attested signing certificate digests is allowed", len(appID.SignatureDigests))
	}
	return &Result{
		Format:             FormatAndroidKey,
		SecurityLevel:      level,
		AttestationVersion: kd.AttestationVersion,
		Package:            pkg,
		Packages:           appID.Packages,
		SignatureDigests:   digests,
		AppIDSource:        source,
		Boot:               kd.Hardware.RootOfTrust,
		ChainSerials:       serials,
	}, nil
}

// splitChain cuts the concatenated DER certificates, enforcing the size
// limits before anything is parsed.
func splitChain(data []byte) ([]*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, refuse(KindMalformed, "empty certificate chain")
	}
	if len(data) > MaxChainLength*MaxCertSize {
		return nil, refuse(KindMalformed, "certificate chain is %d bytes, over the %d-byte limit", len(data), MaxChainLength*MaxCertSize)
	}
	var chain []*x509.Certificate
	for rest := data; len(rest) > 0; {
		if len(chain) == MaxChainLength {
			return nil, refuse(KindMalformed, "certificate chain is longer than %d certificates", MaxChainLength)
		}
		var raw asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &raw); err != nil {
			return nil, refuseWrap(KindMalformed, err, "certificate %d", len(chain))
		}
		if len(raw.FullBytes) > MaxCertSize {
			return nil, refuse(KindMalformed, "certificate %d is %d bytes, over the %d-byte limit", len(chain), len(raw.FullBytes), MaxCertSize)
		}
		c, err := x509.ParseCertificate(raw.FullBytes)
		if err != nil {
			return nil, refuseWrap(KindMalformed, err, "certificate %d", len(chain))
		}
		chain = append(chain, c)
	}
	if len(chain) < MinChainLength {
		return nil, refuse(KindMalformed, "certificate chain has %d certificates, at least %d expected (leaf, attestation certificate, root)", len(chain), MinChainLength)
	}
	return chain, nil
}

// verifyChain checks the chain from the root down, the way Google's reference
// verifier does rather than by RFC 5280 path building: Android chains are
// anchored by the root's public key, some devices' attestation certificates
// are not marked as CAs, and the leaf's validity is set by the device.
func (v *AndroidVerifier) verifyChain(chain []*x509.Certificate) error {
	n := len(chain)
	top := chain[n-1]
	if !bytes.Equal(top.RawIssuer, top.RawSubject) {
		return refuse(KindUntrustedChain, "the chain does not end in a root certificate")
	}
	anchor := v.anchorFor(top)
	if anchor == nil {
		return refuse(KindUntrustedChain, "the chain's root %s is not a configured attestation root", quote(top.Subject.String()))
	}
	now := v.now()
	factory := hasAttribute(chain[n-2].Subject.Names, oidSerialNumber)
	parent := anchor
	for i := n - 2; i >= 0; i-- {
		c := chain[i]
		if !bytes.Equal(c.RawIssuer, parent.RawSubject) {
			return refuse(KindUntrustedChain, "certificate %d is not issued by the next certificate (issuer and subject differ)", i)
		}
		if err := parent.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			return refuseWrap(KindUntrustedChain, err, "certificate %d", i)
		}
		if i > 0 {
			if now.Before(c.NotBefore) {
				return refuse(KindUntrustedChain, "certificate %d is not valid before %s", i, c.NotBefore.UTC().Format(time.RFC3339))
			}
			// Factory-provisioned keys cannot be rotated, so Google's
			// verifier accepts their expired intermediates; the status list
			// is how such a key is withdrawn.
			if now.After(c.NotAfter) && !factory {
				return refuse(KindUntrustedChain, "certificate %d expired at %s", i, c.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		parent = c
	}
	return nil
}

// anchorFor finds the configured root with the chain root's subject and key.
// The key is what Google publishes as the anchor: the device's copy of the
// root certificate may be an older issue of it.
func (v *AndroidVerifier) anchorFor(top *x509.Certificate) *x509.Certificate {
	for _, r := range v.roots {
		if bytes.Equal(r.RawSubjectPublicKeyInfo, top.RawSubjectPublicKeyInfo) && bytes.Equal(r.RawSubject, top.RawSubject) {
			return r
		}
	}
	return nil
}

// keyDescriptionOf returns the leaf's KeyDescription extension and refuses a
// chain with the extension anywhere else: Google's guidance trusts only the
// occurrence nearest the root, and one above the leaf means someone extended
// a genuine attestation with a certificate for another key.
func keyDescriptionOf(chain []*x509.Certificate) ([]byte, error) {
	var found []byte
	for i, c := range chain {
		for _, e := range c.Extensions {
			if !e.Id.Equal(OIDAndroidKeyDescription) {
				continue
			}
			if i > 0 {
				return nil, refuse(KindUntrustedChain, "certificate %d above the leaf carries a key attestation extension (chain extended below an attested key)", i)
			}
			if found != nil {
				return nil, refuse(KindMalformed, "the leaf carries the key attestation extension twice")
			}
			if len(e.Value) > MaxKeyDescriptionSize {
				return nil, refuse(KindMalformed, "key attestation extension is %d bytes, over the %d-byte limit", len(e.Value), MaxKeyDescriptionSize)
			}
			found = e.Value
		}
	}
	if found == nil {
		return nil, refuse(KindMalformed, "the leaf has no key attestation extension")
	}
	return found, nil
}

func hasAttribute(names []pkix.AttributeTypeAndValue, oid asn1.ObjectIdentifier) bool {
	return slices.ContainsFunc(names, func(a pkix.AttributeTypeAndValue) bool { return a.Type.Equal(oid) })
}

// sameKey compares keys by value; a key type without Equal never matches.
func sameKey(attested, csr crypto.PublicKey) bool {
	k, ok := attested.(interface{ Equal(crypto.PublicKey) bool })
	return ok && csr != nil && k.Equal(csr)
}

func allowedPackage(attested []PackageInfo, allowed []string) (string, bool) {
	for _, p := range attested {
		if slices.Contains(allowed, p.Name) {
			return p.Name, true
		}
	}
	return "", false
}

// allowedDigests reports whether any attested digest is allowed (the
// platform verified every signer, so one allowed signer means the app is
// signed with the operator's key) and returns the attested digests.
func allowedDigests(attested [][]byte, allowed []Digest) ([]Digest, bool) {
	var out []Digest
	ok := false
	for _, raw := range attested {
		if len(raw) != len(Digest{}) {
			continue // not SHA-256; cannot be one of ours
		}
		d := Digest(raw)
		out = append(out, d)
		if slices.Contains(allowed, d) {
			ok = true
		}
	}
	return out, ok
}

func describePackages(ps []PackageInfo) string {
	switch len(ps) {
	case 0:
		return "no package"
	case 1:
		return "package " + quote(ps[0].Name) + ", not one the set allows"
	}
	return fmt.Sprintf("%d packages (first %s), none the set allows", len(ps), quote(ps[0].Name))
}
