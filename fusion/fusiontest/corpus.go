// Package fusiontest builds a corpus of hostile client certificates for
// tests: one valid control and at least one certificate per failure class of
// the fusion engine, each with the reason code the engine must report, plus
// a CA and a fusion set file that trusts it.
//
// The Caddy and Envoy tests reuse it for their per-reason tests and the
// parity test, so every case is deterministic in its reason: each
// certificate has exactly one defect against the corpus set. Keys are ECDSA
// P-256 (one shared leaf key, so the set can pin it) except the deliberately
// weak or disallowed ones; building a corpus takes a few milliseconds. The
// certificates are signed with internal/testpki from the template pki issues,
// so each case differs from a real app certificate in its one defect only.
//
//	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
//	cfg, _ := fusion.LoadFile(c.SetFile)
//	for _, tc := range c.Cases {
//		d := engine.Evaluate(ctx, c.SetID, &fusion.Request{PeerCertificates: tc.Chain})
//		// d.Reason must be tc.Want
//	}
package fusiontest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// Case is one client certificate and the reason the engine must give it.
type Case struct {
	Name string
	// Chain is the presented chain as DER, leaf first; nil for "no
	// certificate".
	Chain [][]byte
	// Key is the leaf's private key; nil when Chain is nil or the leaf is
	// not a certificate.
	Key crypto.Signer
	// Want is the expected reason code; "" (threat.ReasonNone) means allow.
	Want threat.Reason
}

// TLSCertificate returns the case as a client certificate for crypto/tls.
func (c Case) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: c.Chain, PrivateKey: c.Key}
}

// Leaf parses the case's leaf, or returns nil when there is none or it is
// not a certificate.
func (c Case) Leaf() *x509.Certificate {
	if len(c.Chain) == 0 {
		return nil
	}
	cert, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		return nil
	}
	return cert
}

// Build ids and dates used by the corpus set's build rules.
const (
	GoodBuild    = "build-2000"
	BlockedBuild = "build-1337"
)

// Device headers the corpus set maps.
const (
	HeaderDeviceID  = "X-Device-Id"
	HeaderOSVersion = "X-Os-Version"
)

// Corpus is a CA, a fusion set file that trusts it, and the cases.
type Corpus struct {
	// Dir is a temporary directory holding CAFile, RevocationFile and
	// SetFile.
	Dir          string
	SetID, AppID string
	// Now is the reference time: valid certificates are valid from Now-1h
	// to Now+30d.
	Now time.Time

	CACert *x509.Certificate
	CAKey  crypto.Signer
	CAPEM  []byte
	CAFile string
	// RevocationFile lists the serial of the "revoked_serial" case.
	RevocationFile string
	// SetFile is a fusion set file (defense mode, threat events on) with
	// one set SetID trusting CAFile, revoking by RevocationFile, pinning the
	// leaf keys, blocking BlockedBuild and builds older than MinBuildDate,
	// max_lifetime 90d, and the device headers above.
	SetFile string
	// Set is the set as written to SetFile; WriteSetFile starts from it.
	Set          fusion.SetConfig
	MinBuildDate time.Time

	// LeafKey is the shared P-256 key of the ordinary leaves.
	LeafKey *ecdsa.PrivateKey

	Cases []Case

	ca *testpki.CA
}

// NewCorpus builds a corpus for the fusion set setID and app appID. It fails
// the test on any error.
func NewCorpus(t testing.TB, setID, appID string) *Corpus {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	c := &Corpus{
		Dir:   t.TempDir(),
		SetID: setID,
		AppID: appID,
		Now:   now,
		// Date only, as users write it.
		MinBuildDate: now.AddDate(0, 0, -30).Truncate(24 * time.Hour),
	}
	c.ca = testpki.NewRoot(t, "mcc test CA "+setID)
	c.CACert, c.CAKey = c.ca.Cert, c.ca.Key
	c.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.CACert.Raw})
	c.CAFile = filepath.Join(c.Dir, "ca.pem")
	writeFile(t, c.CAFile, c.CAPEM, 0o644)
	c.LeafKey = testpki.NewKey(t)

	rsaWeak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatalf("fusiontest: generating RSA key: %v", err)
	}
	p521 := mustECDSA(t, elliptic.P521())
	otherKey := testpki.NewKey(t)

	c.add(Case{Name: "valid", Want: threat.ReasonNone}, c.issue(t, c.LeafKey, nil))
	c.Cases = append(c.Cases, Case{Name: "no_cert", Want: threat.ReasonNoClientCert})

	// A valid chain through an intermediate the client presents.
	inter := c.ca.Intermediate(t, "mcc test intermediate "+setID)
	viaInter := c.sign(t, c.leafTemplate(GoodBuild, now.AddDate(0, 0, -1)), c.LeafKey, inter)
	c.Cases = append(c.Cases, Case{Name: "valid_via_intermediate", Chain: [][]byte{viaInter, inter.Cert.Raw}, Key: c.LeafKey, Want: threat.ReasonNone})

	otherCA := testpki.NewRoot(t, "mcc test CA "+setID) // same name, other key
	c.add(Case{Name: "untrusted_ca", Want: threat.ReasonCertUntrusted},
		c.sign(t, c.leafTemplate(GoodBuild, now.AddDate(0, 0, -1)), c.LeafKey, otherCA))
	c.addKey(Case{Name: "spki_pin_mismatch", Want: threat.ReasonCertUntrusted}, otherKey, c.issue(t, otherKey, nil))

	c.add(Case{Name: "expired", Want: threat.ReasonCertExpired}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.NotBefore, x.NotAfter = now.AddDate(0, 0, -40), now.Add(-time.Hour)
	}))
	c.add(Case{Name: "not_yet_valid", Want: threat.ReasonCertNotYetValid}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.NotBefore, x.NotAfter = now.Add(24*time.Hour), now.AddDate(0, 0, 30)
	}))
	revoked := c.issue(t, c.LeafKey, nil)
	c.add(Case{Name: "revoked_serial", Want: threat.ReasonCertRevoked}, revoked)

	c.add(Case{Name: "identity_wrong_app", Want: threat.ReasonIdentityMismatch}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.URIs = []*url.URL{mustURL(t, certid.IdentityURI(setID, appID+".evil"))}
	}))
	c.add(Case{Name: "identity_wrong_set", Want: threat.ReasonIdentityMismatch}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.URIs = []*url.URL{mustURL(t, certid.IdentityURI(setID+"-other", appID))}
	}))
	c.add(Case{Name: "identity_with_query", Want: threat.ReasonIdentityMismatch}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.URIs = []*url.URL{mustURL(t, certid.IdentityURI(setID, appID)+"?build=1")}
	}))
	c.add(Case{Name: "identity_missing", Want: threat.ReasonIdentityMismatch}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.URIs = nil
	}))
	c.add(Case{Name: "identity_extra", Want: threat.ReasonIdentityMismatch}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.URIs = append(x.URIs, mustURL(t, certid.IdentityURI(setID, "com.example.other")))
	}))

	c.addKey(Case{Name: "weak_rsa_1024", Want: threat.ReasonWeakCrypto}, rsaWeak, c.issue(t, rsaWeak, nil))
	c.addKey(Case{Name: "curve_p521", Want: threat.ReasonWeakCrypto}, p521, c.issue(t, p521, nil))
	c.add(Case{Name: "sha1_signature", Want: threat.ReasonWeakCrypto}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.SignatureAlgorithm = x509.ECDSAWithSHA1
	}))

	c.add(Case{Name: "no_client_auth_eku", Want: threat.ReasonWrongKeyUsage}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}))
	c.add(Case{Name: "no_digital_signature", Want: threat.ReasonWrongKeyUsage}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.KeyUsage = x509.KeyUsageKeyAgreement
	}))

	c.Cases = append(c.Cases, Case{Name: "garbage_der", Chain: [][]byte{[]byte("\x30\x82\x01\x00 this is not a certificate")}, Want: threat.ReasonCertMalformed})
	valid := c.Cases[0].Chain[0]
	c.Cases = append(c.Cases, Case{Name: "chain_too_deep", Chain: [][]byte{valid, c.CACert.Raw, c.CACert.Raw, c.CACert.Raw, c.CACert.Raw}, Key: c.LeafKey, Want: threat.ReasonCertMalformed})
	c.Cases = append(c.Cases, Case{Name: "malformed_intermediate", Chain: [][]byte{valid, []byte("\x30\x03\x02\x01\x01")}, Key: c.LeafKey, Want: threat.ReasonCertMalformed})
	c.add(Case{Name: "cert_too_large", Want: threat.ReasonCertMalformed}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		big, _ := asn1.Marshal(make([]byte, 20<<10))
		x.ExtraExtensions = append(x.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}, Value: big})
	}))
	// RFC 5280 wants a positive serial. Go signs and parses serial 0; a
	// negative one it neither signs nor parses, so that case is serial 0
	// re-encoded as -1 (the signature no longer matters: it never parses).
	serialZero := c.issue(t, c.LeafKey, func(x *x509.Certificate) { x.SerialNumber = big.NewInt(0) })
	c.add(Case{Name: "serial_zero", Want: threat.ReasonCertMalformed}, serialZero)
	c.add(Case{Name: "serial_negative", Want: threat.ReasonCertMalformed}, negativeSerial(t, serialZero))
	c.add(Case{Name: "leaf_is_ca", Want: threat.ReasonCertMalformed}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.IsCA, x.BasicConstraintsValid = true, true
	}))
	c.add(Case{Name: "unknown_critical_extension", Want: threat.ReasonCertMalformed}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.ExtraExtensions = append(x.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 2}, Critical: true, Value: []byte{0x05, 0x00}})
	}))
	c.add(Case{Name: "lifetime_over_max", Want: threat.ReasonCertMalformed}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.NotAfter = now.AddDate(0, 0, 400)
	}))

	c.add(Case{Name: "build_blocked", Want: threat.ReasonBuildBlocked}, c.sign(t, c.leafTemplate(BlockedBuild, now.AddDate(0, 0, -1)), c.LeafKey, c.ca))
	c.add(Case{Name: "build_too_old", Want: threat.ReasonBuildBlocked}, c.sign(t, c.leafTemplate("build-0001", now.AddDate(0, 0, -400)), c.LeafKey, c.ca))
	c.add(Case{Name: "build_missing", Want: threat.ReasonBuildBlocked}, c.issue(t, c.LeafKey, func(x *x509.Certificate) {
		x.Subject = pkix.Name{CommonName: appID, Organization: []string{setID}}
	}))

	rc, err := x509.ParseCertificate(revoked)
	if err != nil {
		t.Fatalf("fusiontest: %v", err)
	}
	c.RevocationFile = filepath.Join(c.Dir, "revoked.txt")
	writeFile(t, c.RevocationFile, []byte("# revoked by fusiontest\n"+rc.SerialNumber.Text(16)+"\n"), 0o644)

	c.Set = fusion.SetConfig{
		ID:          setID,
		Description: "fusiontest corpus set",
		TrustedCA:   fusion.CASource{File: "ca.pem"},
		AppID:       appID,
		SPKIPins:    []string{SPKIPin(c.LeafKey.Public()), SPKIPin(rsaWeak.Public()), SPKIPin(p521.Public())},
		Revocation:  fusion.Revocation{Files: []string{"revoked.txt"}},
		MaxLifetime: fusion.Duration(90 * 24 * time.Hour),
		Builds: fusion.Builds{
			Blocked:      []string{BlockedBuild},
			MinBuildDate: c.MinBuildDate.Format(time.DateOnly),
		},
		Mode:          string(threat.ModeDefense),
		ThreatEvents:  true,
		DeviceHeaders: map[string]string{"deviceID": HeaderDeviceID, "osVersion": HeaderOSVersion},
	}
	c.SetFile = c.WriteSetFile(t, "fusion-sets.yaml", nil)
	return c
}

// CA returns the corpus CA as a test PKI, for tests that sign CRLs or extra
// certificates with it.
func (c *Corpus) CA() *testpki.CA { return c.ca }

// Case returns the named case, failing the test when there is none.
func (c *Corpus) Case(t testing.TB, name string) Case {
	t.Helper()
	for _, tc := range c.Cases {
		if tc.Name == name {
			return tc
		}
	}
	t.Fatalf("fusiontest: no case %q", name)
	return Case{}
}

// WriteSetFile writes a fusion set file named name into Dir holding the
// corpus set, changed by edit when edit is not nil, and returns its path.
func (c *Corpus) WriteSetFile(t testing.TB, name string, edit func(*fusion.SetConfig)) string {
	t.Helper()
	sc := c.Set
	sc.SPKIPins = append([]string(nil), c.Set.SPKIPins...)
	sc.Builds.Blocked = append([]string(nil), c.Set.Builds.Blocked...)
	sc.Revocation.Files = append([]string(nil), c.Set.Revocation.Files...)
	sc.DeviceHeaders = make(map[string]string, len(c.Set.DeviceHeaders))
	for k, v := range c.Set.DeviceHeaders {
		sc.DeviceHeaders[k] = v
	}
	if edit != nil {
		edit(&sc)
	}
	data, err := yaml.Marshal(fusion.File{FusionSets: []fusion.SetConfig{sc}})
	if err != nil {
		t.Fatalf("fusiontest: encoding fusion set file: %v", err)
	}
	path := filepath.Join(c.Dir, name)
	writeFile(t, path, data, 0o644)
	return path
}

// Issue signs a new leaf with the corpus CA: a valid certificate for the
// corpus set (good build, dated yesterday, valid Now-1h..Now+30d) changed by
// edit when it is not nil. key nil means the shared LeafKey.
func (c *Corpus) Issue(t testing.TB, key crypto.Signer, edit func(*x509.Certificate)) Case {
	t.Helper()
	if key == nil {
		key = c.LeafKey
	}
	return Case{Name: "issued", Chain: [][]byte{c.issue(t, key, edit)}, Key: key}
}

// WriteClientFiles writes the case's chain (PEM) and key (PKCS#8 PEM, mode
// 0600) into Dir and returns their paths, for clients such as curl.
func (c *Corpus) WriteClientFiles(t testing.TB, tc Case) (certFile, keyFile string) {
	t.Helper()
	var certPEM []byte
	for _, der := range tc.Chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	certFile = filepath.Join(c.Dir, tc.Name+".crt")
	writeFile(t, certFile, certPEM, 0o644)
	if tc.Key == nil {
		return certFile, ""
	}
	der, err := x509.MarshalPKCS8PrivateKey(tc.Key)
	if err != nil {
		t.Fatalf("fusiontest: encoding key: %v", err)
	}
	keyFile = filepath.Join(c.Dir, tc.Name+".key")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return certFile, keyFile
}

// SPKIPin returns the spki_pins value for a public key: base64 SHA-256 of
// its SubjectPublicKeyInfo.
func SPKIPin(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic("fusiontest: " + err.Error())
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func (c *Corpus) add(tc Case, der []byte) { c.addKey(tc, c.LeafKey, der) }

func (c *Corpus) addKey(tc Case, key crypto.Signer, der []byte) {
	tc.Chain, tc.Key = [][]byte{der}, key
	c.Cases = append(c.Cases, tc)
}

// leafTemplate is a valid app build certificate for the corpus set, the
// shape pki issues (testpki.AppTemplate), dated from c.Now.
func (c *Corpus) leafTemplate(buildID string, buildDate time.Time) *x509.Certificate {
	b := certid.BuildInfo{ID: buildID, Date: buildDate.UTC().Truncate(time.Second), User: "ci", Host: "builder-1", SDK: "mcc-sdk/1.4.2"}
	tmpl := testpki.AppTemplate(c.SetID, c.AppID, b)
	tmpl.NotBefore, tmpl.NotAfter = c.Now.Add(-time.Hour), c.Now.AddDate(0, 0, 30)
	return tmpl
}

func (c *Corpus) issue(t testing.TB, key crypto.Signer, edit func(*x509.Certificate)) []byte {
	t.Helper()
	tmpl := c.leafTemplate(GoodBuild, c.Now.AddDate(0, 0, -1))
	if edit != nil {
		edit(tmpl)
	}
	return c.sign(t, tmpl, key, c.ca)
}

func (c *Corpus) sign(t testing.TB, tmpl *x509.Certificate, key crypto.Signer, ca *testpki.CA) []byte {
	t.Helper()
	return ca.Sign(t, tmpl, key).Cert.Raw
}

// negativeSerial re-encodes the serial 0 of der as -1 (same length, so the
// DER stays well formed).
func negativeSerial(t testing.TB, der []byte) []byte {
	t.Helper()
	// TBSCertificate: version [0] INTEGER 2, then serialNumber INTEGER 0.
	marker := []byte{0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x00}
	i := bytes.Index(der, marker)
	if i < 0 {
		t.Fatal("fusiontest: no serial 0 in certificate")
	}
	out := bytes.Clone(der)
	out[i+len(marker)-1] = 0xff
	return out
}

func mustECDSA(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatalf("fusiontest: generating key: %v", err)
	}
	return k
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("fusiontest: %v", err)
	}
	return u
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatalf("fusiontest: %v", err)
	}
}
