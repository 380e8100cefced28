package fusion

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// Caps on what a client may present. Real app chains are one or two
// certificates of about a kilobyte; anything far larger is an attempt to make
// the gateway parse and verify a lot.
const (
	MaxCertBytes  = 16 << 10
	MaxChainBytes = 64 << 10
)

// installLifetimeSkew is what an install certificate may live beyond
// installs.max_lifetime: pki.IssueInstall backdates notBefore by one minute
// (its installClockSkew) for devices whose clock runs behind, so a
// certificate issued for exactly max_lifetime spans max_lifetime plus that.
const installLifetimeSkew = time.Minute

var (
	farPast   = time.Time{}
	farFuture = time.Unix(math.MaxInt64/2, 0)
)

// checkShape applies the size and depth caps. It does not allocate on the
// good path, so it runs before the verdict cache on every request.
func checkShape(set *Set, chain [][]byte) (threat.Reason, map[string]any) {
	if len(chain) > set.MaxChainDepth {
		return threat.ReasonCertMalformed, map[string]any{"error": "chain too deep", "depth": len(chain), "maxDepth": set.MaxChainDepth}
	}
	total := 0
	for i, der := range chain {
		if len(der) == 0 || len(der) > MaxCertBytes {
			return threat.ReasonCertMalformed, map[string]any{"error": "certificate size out of bounds", "index": i, "bytes": len(der), "maxBytes": MaxCertBytes}
		}
		total += len(der)
	}
	if total > MaxChainBytes {
		return threat.ReasonCertMalformed, map[string]any{"error": "chain too large", "bytes": total, "maxBytes": MaxChainBytes}
	}
	return threat.ReasonNone, nil
}

// checkCert computes the verdict for a chain that passed checkShape. The
// order is fixed so both gateways report the same reason for the same
// certificate: parse, signature algorithms, validity time, trust and pins,
// revocation, structure, identity, key strength, key usage, builds.
func checkCert(set *Set, chain [][]byte, verified [][]*x509.Certificate, now time.Time) *verdict {
	leafDER := chain[0]
	sum := sha256.Sum256(leafDER)
	v := &verdict{
		certSHA:    hex.EncodeToString(sum[:]),
		rev:        set.rev.Load(),
		validFrom:  farPast,
		validUntil: farFuture,
	}
	fail := func(r threat.Reason, data map[string]any) *verdict {
		v.reason, v.data = r, data
		return v
	}

	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return fail(threat.ReasonCertMalformed, errData("parsing leaf certificate", err))
	}
	describe(v, leaf)
	v.validFrom, v.validUntil = leaf.NotBefore, leaf.NotAfter
	// RFC 5280 4.1.2.2: the serial is a positive integer. Go refuses a
	// negative one while parsing (unless GODEBUG x509negativeserial=1) but
	// accepts zero; both gateways answer CERT_MALFORMED for either.
	if leaf.SerialNumber == nil || leaf.SerialNumber.Sign() <= 0 {
		return fail(threat.ReasonCertMalformed, map[string]any{"error": "serial number is not a positive integer (RFC 5280 4.1.2.2)", "serial": v.cert.Serial})
	}

	presented := make([]*x509.Certificate, 0, len(chain)-1)
	for i, der := range chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fail(threat.ReasonCertMalformed, errData(fmt.Sprintf("parsing chain certificate %d", i+1), err))
		}
		presented = append(presented, c)
	}
	for i, c := range append([]*x509.Certificate{leaf}, presented...) {
		if len(c.UnhandledCriticalExtensions) > 0 {
			return fail(threat.ReasonCertMalformed, map[string]any{"error": "unknown critical extension", "index": i, "oid": c.UnhandledCriticalExtensions[0].String()})
		}
		// A trust anchor's self-signature is never checked, so a presented
		// copy of the set's own CA is not judged by it.
		if weakSignature(c.SignatureAlgorithm) && !(i > 0 && isSetCA(set, c)) {
			return fail(threat.ReasonWeakCrypto, map[string]any{"error": "weak signature algorithm", "index": i, "algorithm": c.SignatureAlgorithm.String()})
		}
	}

	// Validity is classified here, with the injected clock, so that an
	// expired certificate is CERT_EXPIRED and not a chain error.
	if now.Before(leaf.NotBefore) {
		v.validFrom, v.validUntil = farPast, leaf.NotBefore.Add(-time.Nanosecond)
		return fail(threat.ReasonCertNotYetValid, map[string]any{"error": "certificate not yet valid", "notBefore": leaf.NotBefore.UTC().Format(time.RFC3339)})
	}
	if now.After(leaf.NotAfter) {
		v.validFrom, v.validUntil = leaf.NotAfter.Add(time.Nanosecond), farFuture
		return fail(threat.ReasonCertExpired, map[string]any{"error": "certificate expired", "notAfter": leaf.NotAfter.UTC().Format(time.RFC3339)})
	}

	vchain := reusableChain(set, leafDER, verified)
	if vchain == nil {
		var r threat.Reason
		var data map[string]any
		vchain, r, data = verifyChain(set, leaf, presented, now)
		if r != threat.ReasonNone {
			return fail(r, data)
		}
	}
	// From here on the chain is the CA's: the verdict may be cached.
	v.trusted = true
	for _, c := range vchain {
		if c.NotBefore.After(v.validFrom) {
			v.validFrom = c.NotBefore
		}
		if c.NotAfter.Before(v.validUntil) {
			v.validUntil = c.NotAfter
		}
	}
	if len(set.SPKIPins) > 0 {
		h := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
		if !slices.ContainsFunc(set.SPKIPins, func(p []byte) bool { return bytes.Equal(p, h[:]) }) {
			return fail(threat.ReasonCertUntrusted, map[string]any{"error": "SPKI pin mismatch", "spki": base64.StdEncoding.EncodeToString(h[:])})
		}
	}

	if v.rev != nil {
		if bySerial, byFP := v.rev.revoked(leaf.SerialNumber.Bytes(), &sum); bySerial || byFP {
			data := map[string]any{"error": "certificate revoked", "serial": v.cert.Serial}
			if byFP {
				data["sha256"] = v.certSHA
			}
			return fail(threat.ReasonCertRevoked, data)
		}
		// An expired CRL no longer says whether the leaf is revoked: fail
		// closed, as Envoy does (see crl.go for the policy).
		if ci := v.rev.crlFor(leaf, vchain); ci != nil && !ci.nextUpdate.IsZero() {
			if now.After(ci.nextUpdate) {
				if after := ci.nextUpdate.Add(time.Nanosecond); after.After(v.validFrom) {
					v.validFrom = after
				}
				return fail(threat.ReasonConfigError, map[string]any{
					"error":      "the certificate revocation list of the certificate's issuer has expired: revocation status unknown",
					"crlStatus":  CRLExpired,
					"crl":        filepath.Base(ci.path),
					"nextUpdate": ci.nextUpdate.UTC().Format(time.RFC3339),
				})
			}
			// The verdict must not outlive the CRL it was checked against.
			if ci.nextUpdate.Before(v.validUntil) {
				v.validUntil = ci.nextUpdate
			}
		}
	}

	if leaf.BasicConstraintsValid && leaf.IsCA {
		return fail(threat.ReasonCertMalformed, map[string]any{"error": "leaf certificate is a CA"})
	}
	if set.MaxLifetime > 0 {
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > set.MaxLifetime {
			return fail(threat.ReasonCertMalformed, map[string]any{"error": "certificate lifetime exceeds max_lifetime", "lifetime": life.String(), "maxLifetime": set.MaxLifetime.String()})
		}
	}

	if v.kind() == certid.KindInstall {
		// pki.IssueInstall backdates notBefore by pki.InstallBackdate for
		// clock skew, so a certificate issued for exactly max_lifetime
		// lives that much longer: tolerated, and nothing more.
		if life := leaf.NotAfter.Sub(leaf.NotBefore); life > set.Installs.MaxLifetime+installLifetimeSkew {
			return fail(threat.ReasonCertMalformed, map[string]any{"error": "install certificate lifetime exceeds installs.max_lifetime", "lifetime": life.String(), "maxLifetime": set.Installs.MaxLifetime.String()})
		}
	}

	if r, data := checkIdentity(set, leaf); r != threat.ReasonNone {
		return fail(r, data)
	}
	if r, data := checkKey(set, leaf); r != threat.ReasonNone {
		return fail(r, data)
	}
	if r, data := checkUsage(set, leaf); r != threat.ReasonNone {
		return fail(r, data)
	}
	if r, data := checkBuild(set, leaf); r != threat.ReasonNone {
		return fail(r, data)
	}
	return v
}

// describe fills the verdict's certificate description and build metadata.
func describe(v *verdict, leaf *x509.Certificate) {
	v.cert = &threat.CertInfo{
		Serial:    leaf.SerialNumber.Text(16),
		SHA256:    v.certSHA,
		Subject:   truncate(leaf.Subject.String(), 1024),
		Issuer:    truncate(leaf.Issuer.String(), 1024),
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
	}
	if _, app, n := certid.Identity(leaf); n == 1 {
		v.cert.AppID = truncate(app, 256)
	}
	if info, ok, err := certid.ParseBuildInfo(leaf); ok && err == nil {
		v.build, v.hasBuild = info, true
		v.cert.BuildID = info.ID
	}
}

// describeLeaf describes a leaf for the event of a failure the gateway
// observed itself (Request.Reason); nil when the leaf does not parse.
func describeLeaf(der []byte) *verdict {
	if len(der) == 0 || len(der) > MaxCertBytes {
		return nil
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	v := &verdict{certSHA: sha256Hex(der)}
	describe(v, leaf)
	return v
}

// reusableChain returns a chain the TLS stack verified for this leaf when it
// ends in one of the set's own CAs (a chain to some other root in the
// gateway's pool proves nothing about this set).
func reusableChain(set *Set, leafDER []byte, verified [][]*x509.Certificate) []*x509.Certificate {
	for _, chain := range verified {
		if len(chain) < 2 || chain[0] == nil || !bytes.Equal(chain[0].Raw, leafDER) {
			continue
		}
		last := chain[len(chain)-1]
		if last == nil {
			continue
		}
		for _, ca := range set.CACerts {
			if bytes.Equal(last.Raw, ca.Raw) {
				return chain
			}
		}
	}
	return nil
}

// verifyChain verifies leaf against the set's roots, with the set's
// intermediates and the presented ones.
func verifyChain(set *Set, leaf *x509.Certificate, presented []*x509.Certificate, now time.Time) ([]*x509.Certificate, threat.Reason, map[string]any) {
	inter := set.Intermediates
	if len(presented) > 0 {
		inter = x509.NewCertPool()
		for _, c := range set.IntermediateCerts {
			inter.AddCert(c)
		}
		for _, c := range presented {
			inter.AddCert(c)
		}
	}
	usage := x509.ExtKeyUsageAny
	if set.RequireClientAuthEKU {
		usage = x509.ExtKeyUsageClientAuth
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         set.Roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err == nil && len(chains) > 0 {
		return chains[0], threat.ReasonNone, nil
	}
	if err == nil {
		err = errors.New("no chain")
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return nil, threat.ReasonCertExpired, errData("chain", err)
		case x509.IncompatibleUsage:
			return nil, threat.ReasonWrongKeyUsage, errData("chain", err)
		case x509.TooManyIntermediates:
			return nil, threat.ReasonCertMalformed, errData("chain", err)
		}
	}
	var insecure x509.InsecureAlgorithmError
	if errors.As(err, &insecure) {
		return nil, threat.ReasonWeakCrypto, errData("chain", err)
	}
	return nil, threat.ReasonCertUntrusted, errData("chain", err)
}

func checkIdentity(set *Set, leaf *x509.Certificate) (threat.Reason, map[string]any) {
	// The whole URI must match, as Envoy's exact SAN matcher requires: a
	// port, query or fragment makes it another identity.
	var got []string
	for _, u := range leaf.URIs {
		if u.Scheme == certid.Scheme {
			got = append(got, truncate(u.String(), 256))
		}
	}
	n := len(got)
	if n == 1 && got[0] == set.IdentityURI {
		return threat.ReasonNone, nil
	}
	data := map[string]any{"expected": set.IdentityURI, "got": got}
	switch n {
	case 0:
		data["error"] = "no mcc identity URI SAN"
	case 1:
		data["error"] = "identity URI SAN does not match the fusion set"
	default:
		data["error"] = "more than one mcc identity URI SAN"
	}
	return threat.ReasonIdentityMismatch, data
}

// checkKind refuses a certificate whose kind the request's purpose does
// not take: on the set's routes the kinds installs.accept lists, for
// enrollment a build certificate, for renewal an install certificate
// (InstallPolicy.acceptsKind). A certificate with no or unreadable build
// metadata counts as a build certificate. It runs after the verdict,
// cached or not: the same certificate is good for one purpose and not for
// another, so the kind cannot be part of the cached verdict. On the good
// path it compares two flags and allocates nothing.
func checkKind(set *Set, purpose Purpose, v *verdict) (threat.Reason, map[string]any) {
	kind := v.kind()
	if set.Installs.acceptsKind(purpose, kind) {
		return threat.ReasonNone, nil
	}
	var accept []string
	switch purpose {
	case PurposeEnroll:
		accept = []string{certid.KindBuild.String()}
	case PurposeRenew:
		accept = []string{certid.KindInstall.String()}
	default:
		accept = set.Installs.AcceptNames()
	}
	return threat.ReasonCertKindRefused, map[string]any{
		"error":  kind.String() + " certificate not accepted " + purpose.what(),
		"kind":   kind.String(),
		"accept": accept,
	}
}

// what names purpose in a refusal.
func (p Purpose) what() string {
	switch p {
	case PurposeEnroll:
		return "for enrollment"
	case PurposeRenew:
		return "for renewal"
	}
	return "on the fusion set's routes (installs.accept)"
}

func checkKey(set *Set, leaf *x509.Certificate) (threat.Reason, map[string]any) {
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < set.MinRSABits {
			return threat.ReasonWeakCrypto, map[string]any{"error": "RSA key too small", "bits": bits, "minBits": set.MinRSABits}
		}
	case *ecdsa.PublicKey:
		name := "unknown"
		if k.Curve != nil && k.Curve.Params() != nil {
			name = k.Curve.Params().Name
		}
		if !set.curves[name] {
			return threat.ReasonWeakCrypto, map[string]any{"error": "curve not allowed", "curve": name}
		}
	case ed25519.PublicKey:
		if !set.curves["Ed25519"] {
			return threat.ReasonWeakCrypto, map[string]any{"error": "curve not allowed", "curve": "Ed25519"}
		}
	default:
		return threat.ReasonWeakCrypto, map[string]any{"error": "unsupported public key algorithm", "algorithm": leaf.PublicKeyAlgorithm.String()}
	}
	return threat.ReasonNone, nil
}

func checkUsage(set *Set, leaf *x509.Certificate) (threat.Reason, map[string]any) {
	if set.RequireClientAuthEKU && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return threat.ReasonWrongKeyUsage, map[string]any{"error": "extended key usage clientAuth missing"}
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return threat.ReasonWrongKeyUsage, map[string]any{"error": "key usage digitalSignature missing"}
	}
	return threat.ReasonNone, nil
}

func checkBuild(set *Set, leaf *x509.Certificate) (threat.Reason, map[string]any) {
	if len(set.blocked) == 0 && set.MinBuildDate.IsZero() {
		return threat.ReasonNone, nil
	}
	info, ok, err := certid.ParseBuildInfo(leaf)
	switch {
	case !ok:
		return threat.ReasonBuildBlocked, map[string]any{"error": "no build metadata in certificate"}
	case err != nil:
		return threat.ReasonBuildBlocked, errData("build metadata", err)
	}
	if _, blocked := set.blocked[info.ID]; blocked {
		return threat.ReasonBuildBlocked, map[string]any{"error": "build is blocked", "buildID": info.ID}
	}
	if !set.MinBuildDate.IsZero() && (info.Date.IsZero() || info.Date.Before(set.MinBuildDate)) {
		data := map[string]any{"error": "build older than min_build_date", "buildID": info.ID, "minBuildDate": set.MinBuildDate.UTC().Format(time.RFC3339)}
		if !info.Date.IsZero() {
			data["buildDate"] = info.Date.UTC().Format(time.RFC3339)
		}
		return threat.ReasonBuildBlocked, data
	}
	return threat.ReasonNone, nil
}

func isSetCA(set *Set, c *x509.Certificate) bool {
	for _, ca := range set.CACerts {
		if bytes.Equal(ca.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func weakSignature(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return true
	}
	return false
}

func errData(what string, err error) map[string]any {
	return map[string]any{"error": truncate(what+": "+err.Error(), 512)}
}
