package attestation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// A test PKI shaped like an Android chain (root, intermediate, leaf with the
// KeyDescription extension) and a KeyDescription encoder written from the
// published schema, independent of the parser under test.

var fixtureNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

var testChallenge = []byte("enrollment-challenge-0123456789ab")

const testPackage = "com.example.bank"

var testDigest = Digest{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}

func testExpect() Expectations {
	return Expectations{PackageNames: []string{testPackage}, SigningCertDigests: []Digest{testDigest}}
}

// Encoder side of the schema.

type encKeyDescription struct {
	AttestationVersion       int
	AttestationSecurityLevel asn1.Enumerated
	KeyMintVersion           int
	KeyMintSecurityLevel     asn1.Enumerated
	AttestationChallenge     []byte
	UniqueID                 []byte
	SoftwareEnforced         asn1.RawValue
	HardwareEnforced         asn1.RawValue
}

type encRootOfTrust struct {
	VerifiedBootKey   []byte
	DeviceLocked      bool
	VerifiedBootState asn1.Enumerated
	VerifiedBootHash  []byte
}

type encPackageInfo struct {
	PackageName []byte
	Version     int64
}

type encAppID struct {
	PackageInfos     []encPackageInfo `asn1:"set"`
	SignatureDigests [][]byte         `asn1:"set"`
}

// entry is one AuthorizationList field: [tag] EXPLICIT value.
type entry struct {
	tag   int
	value []byte // DER of the inner value
}

func mustMarshal(t testing.TB, v any, params ...string) []byte {
	t.Helper()
	var b []byte
	var err error
	if len(params) > 0 {
		b, err = asn1.MarshalWithParams(v, params[0])
	} else {
		b, err = asn1.Marshal(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func authList(t testing.TB, entries ...entry) asn1.RawValue {
	t.Helper()
	var content []byte
	for _, e := range entries {
		content = append(content, mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: e.tag, IsCompound: true, Bytes: e.value})...)
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: content}
}

func appIDEntry(t testing.TB, id encAppID) entry {
	return entry{tagAttestationApplicationID, mustMarshal(t, mustMarshal(t, id))}
}

func rootOfTrustEntry(t testing.TB, r encRootOfTrust) entry {
	return entry{tagRootOfTrust, mustMarshal(t, r)}
}

// kdOptions is a KeyDescription with the test's defaults, to be changed by
// each case.
type kdOptions struct {
	attestLevel, keyMintLevel asn1.Enumerated
	challenge                 []byte
	software, hardware        []entry
}

func defaultKD(t testing.TB) kdOptions {
	return kdOptions{
		attestLevel:  1,
		keyMintLevel: 1,
		challenge:    testChallenge,
		software: []entry{
			{701, mustMarshal(t, 1767225600000)}, // creationDateTime
			appIDEntry(t, encAppID{
				PackageInfos:     []encPackageInfo{{[]byte(testPackage), 42}},
				SignatureDigests: [][]byte{testDigest[:]},
			}),
		},
		hardware: []entry{
			{1, mustMarshal(t, []int{2}, "set")}, // purpose: sign
			{2, mustMarshal(t, 3)},               // algorithm: EC
			rootOfTrustEntry(t, encRootOfTrust{make([]byte, 32), true, 0, make([]byte, 32)}),
			{705, mustMarshal(t, 160000)}, // osVersion
		},
	}
}

func (o kdOptions) encode(t testing.TB) []byte {
	return mustMarshal(t, encKeyDescription{
		AttestationVersion:       400,
		AttestationSecurityLevel: o.attestLevel,
		KeyMintVersion:           400,
		KeyMintSecurityLevel:     o.keyMintLevel,
		AttestationChallenge:     o.challenge,
		UniqueID:                 []byte{},
		SoftwareEnforced:         authList(t, o.software...),
		HardwareEnforced:         authList(t, o.hardware...),
	})
}

// pkiFixture is a root, an intermediate and a device key.
type pkiFixture struct {
	rootKey, intKey, leafKey *ecdsa.PrivateKey
	root, inter              *x509.Certificate
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serialCounter int64 = 0x1000

func issue(t testing.TB, tmpl, parent *x509.Certificate, pub any, parentKey *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	serialCounter++
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(serialCounter)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caTemplate(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"mcc attest test"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

func newFixture(t testing.TB) *pkiFixture {
	t.Helper()
	f := &pkiFixture{rootKey: newKey(t), intKey: newKey(t), leafKey: newKey(t)}
	f.root = issue(t, caTemplate("Test Attestation Root", fixtureNow.AddDate(-5, 0, 0), fixtureNow.AddDate(20, 0, 0)), nil, &f.rootKey.PublicKey, f.rootKey)
	f.inter = f.intermediate(t, fixtureNow.AddDate(-1, 0, 0), fixtureNow.AddDate(1, 0, 0))
	return f
}

func (f *pkiFixture) intermediate(t testing.TB, notBefore, notAfter time.Time) *x509.Certificate {
	return issue(t, caTemplate("Test TEE Attestation Key", notBefore, notAfter), f.root, &f.intKey.PublicKey, f.rootKey)
}

// leaf issues the attested certificate for the device key with the given
// KeyDescription (nil: no extension).
func (f *pkiFixture) leaf(t testing.TB, kd []byte, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: "Android Keystore Key"},
		NotBefore: time.Unix(0, 0),
		NotAfter:  time.Date(2048, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	if kd != nil {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDAndroidKeyDescription, Value: kd}}
	}
	return issue(t, tmpl, parent, &f.leafKey.PublicKey, parentKey)
}

// chain is the device's getCertificateChain: leaf, intermediate, root.
func (f *pkiFixture) chain(t testing.TB, kd []byte) []byte {
	return concat(f.leaf(t, kd, f.inter, f.intKey), f.inter, f.root)
}

func concat(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

func (f *pkiFixture) verifier(t testing.TB, opts ...AndroidOption) *AndroidVerifier {
	t.Helper()
	v, err := NewAndroidVerifier(append([]AndroidOption{WithRoots([]*x509.Certificate{f.root}), WithClock(func() time.Time { return fixtureNow })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *pkiFixture) request(att []byte) Request {
	return Request{Attestation: att, Challenge: testChallenge, PublicKey: &f.leafKey.PublicKey, Expect: testExpect()}
}

var asn1Null = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagNull}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }

func extensionOf(kd []byte) []pkix.Extension {
	return []pkix.Extension{{Id: OIDAndroidKeyDescription, Value: kd}}
}
