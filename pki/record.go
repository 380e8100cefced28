package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

// RecordSchema identifies a certified-secure record.
const RecordSchema = "mcc.certified-secure/v1"

// Record is the certified-secure record of one app build: what was issued,
// for which fusion set and app, by whom, which protections the fusion set
// had at the time, and how the bundle is encrypted, signed by the CA. It is
// the audit and go/no-go artifact a CI pipeline keeps next to the build.
//
// The signature covers json.Marshal of the record with Signature nil; Go
// marshals struct fields in declaration order, so the encoding is
// deterministic. The file holds the same encoding indented, and
// VerifyRecord requires exactly that, so no byte can change unnoticed.
type Record struct {
	Schema       string        `json:"schema"`
	FusionSet    string        `json:"fusionSet"`
	AppID        string        `json:"appId"`
	Build        RecordBuild   `json:"build"`
	Protections  *Protections  `json:"protections,omitempty"`
	Certificate  RecordCert    `json:"certificate"`
	Bundle       RecordBundle  `json:"bundle"`
	LegacyBundle *RecordBundle `json:"legacyBundle,omitempty"`
	IssuedAt     time.Time     `json:"issuedAt"`
	CA           RecordCA      `json:"ca"`
	Signature    *RecordSig    `json:"signature,omitempty"`
}

// RecordBuild is the build metadata carried in the certificate.
type RecordBuild struct {
	ID         string    `json:"id"`
	Date       time.Time `json:"date,omitzero"`
	User       string    `json:"user,omitempty"`
	Host       string    `json:"host,omitempty"`
	SDKVersion string    `json:"sdkVersion,omitempty"`
}

// RecordCert describes the issued certificate. PEM is the public
// certificate (never the key).
type RecordCert struct {
	Serial      string    `json:"serial"`
	SHA256      string    `json:"sha256"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	IdentityURI string    `json:"identityURI"`
	PEM         string    `json:"pem"`
}

// RecordBundle describes a PKCS#12 bundle (never its password).
type RecordBundle struct {
	File   string `json:"file"` // base name, as written beside the record
	SHA256 string `json:"sha256"`
	BundleParams
}

// RecordCA names the signing CA.
type RecordCA struct {
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// RecordSig is the CA's signature over the record without this field.
type RecordSig struct {
	Algorithm string `json:"algorithm"` // ECDSA-SHA256 (ASN.1) or RSA-PSS-SHA256
	Value     string `json:"value"`     // base64
}

// Protections are a fusion set's protections as configured when the build
// was certified (effective values: defaults filled in).
type Protections struct {
	Source        string            `json:"source,omitempty"`       // fusion set file
	SourceSHA256  string            `json:"sourceSHA256,omitempty"` // of that file
	Mode          string            `json:"mode"`
	ThreatEvents  bool              `json:"threatEvents"`
	IdentityURI   string            `json:"identityURI"`
	TrustedCA     []string          `json:"trustedCA"` // sha256 fingerprints
	SPKIPins      []string          `json:"spkiPins,omitempty"`
	Revocation    RevocationSources `json:"revocation"`
	CryptoFloor   CryptoFloor       `json:"cryptoFloor"`
	MaxLifetime   string            `json:"maxLifetime,omitempty"`
	MaxChainDepth int               `json:"maxChainDepth,omitempty"`
	Builds        BuildRules        `json:"builds"`
	FailSafe      *FailSafeRule     `json:"failSafe,omitempty"`
	BlockStatus   int               `json:"blockStatus,omitempty"`
	DeviceContext []string          `json:"deviceContext,omitempty"` // device keys mapped from headers
}

// RevocationSources lists where the set reads revocations from.
type RevocationSources struct {
	Serials      int      `json:"serials"`      // inline serials (count)
	Fingerprints int      `json:"fingerprints"` // inline fingerprints (count)
	Files        []string `json:"files,omitempty"`
	CRLs         []string `json:"crls,omitempty"`
}

// CryptoFloor is the set's minimum crypto for presented certificates.
type CryptoFloor struct {
	MinRSABits           int      `json:"minRSABits"`
	AllowedCurves        []string `json:"allowedCurves"`
	RequireClientAuthEKU bool     `json:"requireClientAuthEKU"`
}

// BuildRules restricts accepted builds.
type BuildRules struct {
	Blocked      []string `json:"blocked,omitempty"`
	MinBuildDate string   `json:"minBuildDate,omitempty"`
}

// FailSafeRule is fail-safe enforcement.
type FailSafeRule struct {
	Threshold int    `json:"threshold"`
	Window    string `json:"window,omitempty"`
	Duration  string `json:"duration,omitempty"`
}

// RecordInput is what NewRecord certifies.
type RecordInput struct {
	Issued      *Issued
	Bundle      *Bundle
	BundleFile  string // base name of the bundle file
	Legacy      *Bundle
	LegacyFile  string
	Protections *Protections
}

// NewRecord builds and signs the certified-secure record of an issuance.
func (ca *CA) NewRecord(in RecordInput) (*Record, error) {
	if in.Issued == nil || in.Bundle == nil {
		return nil, errors.New("record: issued certificate and bundle are required")
	}
	c := in.Issued.Cert
	set, app, _ := certid.Identity(c)
	b := in.Issued.Build
	r := &Record{
		Schema:      RecordSchema,
		FusionSet:   set,
		AppID:       app,
		Build:       RecordBuild{ID: b.ID, Date: b.Date.UTC(), User: b.User, Host: b.Host, SDKVersion: b.SDK},
		Protections: in.Protections,
		Certificate: RecordCert{
			Serial:      FormatSerial(c.SerialNumber),
			SHA256:      Fingerprint(c.Raw),
			NotBefore:   c.NotBefore.UTC(),
			NotAfter:    c.NotAfter.UTC(),
			Subject:     nameString(c.Subject),
			Issuer:      nameString(c.Issuer),
			IdentityURI: certid.IdentityURI(set, app),
			PEM:         string(pemEncode("CERTIFICATE", c.Raw)),
		},
		Bundle:   RecordBundle{File: in.BundleFile, SHA256: in.Bundle.SHA256, BundleParams: in.Bundle.Params},
		IssuedAt: ca.now().UTC().Truncate(time.Second),
		CA:       RecordCA{Subject: nameString(ca.Cert.Subject), SHA256: ca.Fingerprint()},
	}
	if in.Legacy != nil {
		r.LegacyBundle = &RecordBundle{File: in.LegacyFile, SHA256: in.Legacy.SHA256, BundleParams: in.Legacy.Params}
	}
	msg, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	alg, sig, err := signDigest(ca.Key, msg)
	if err != nil {
		return nil, fmt.Errorf("record: signing: %w", err)
	}
	r.Signature = &RecordSig{Algorithm: alg, Value: base64.StdEncoding.EncodeToString(sig)}
	return r, nil
}

// Encode returns the record file's bytes (indented JSON and a newline).
func (r *Record) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// RecordCheck names a verification step, so callers and tests can tell
// which one failed.
type RecordCheck string

const (
	CheckParse      RecordCheck = "record"
	CheckCA         RecordCheck = "ca"
	CheckSignature  RecordCheck = "signature"
	CheckCanonical  RecordCheck = "canonical"
	CheckCert       RecordCheck = "certificate"
	CheckBundleHash RecordCheck = "bundle-sha256"
	CheckBundleOpen RecordCheck = "bundle-decode"
	CheckBundleCert RecordCheck = "bundle-certificate"
)

// VerifyError is a failed record check.
type VerifyError struct {
	Check RecordCheck
	Msg   string
}

func (e *VerifyError) Error() string { return string(e.Check) + " check failed: " + e.Msg }

func verr(c RecordCheck, format string, args ...any) error {
	return &VerifyError{Check: c, Msg: fmt.Sprintf(format, args...)}
}

// BundleToVerify is a bundle file presented with a record.
type BundleToVerify struct {
	Data     []byte
	Password string
}

// VerifyRecord checks a record file's bytes against the CA certificate: the
// record's CA fingerprint, the CA's signature, that the file is the exact
// canonical encoding, and that the embedded certificate is the one described
// and was signed by the CA. With a bundle, it also checks that the bundle is
// one the record names (SHA-256) and that it opens with the password to the
// record's certificate and a matching key. The first failed check is
// returned as a *VerifyError.
func VerifyRecord(data []byte, ca *x509.Certificate, bundle *BundleToVerify) (*Record, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, verr(CheckParse, "not a certified-secure record: %v", err)
	}
	if r.Schema != RecordSchema {
		return nil, verr(CheckParse, "schema %q, want %q", r.Schema, RecordSchema)
	}
	if got := Fingerprint(ca.Raw); r.CA.SHA256 != got {
		return nil, verr(CheckCA, "record names CA sha256:%s, but the given CA is sha256:%s", r.CA.SHA256, got)
	}
	if r.Signature == nil {
		return nil, verr(CheckSignature, "record is not signed")
	}
	sig, err := base64.StdEncoding.DecodeString(r.Signature.Value)
	if err != nil {
		return nil, verr(CheckSignature, "signature is not base64")
	}
	unsigned := r
	unsigned.Signature = nil
	msg, err := json.Marshal(&unsigned)
	if err != nil {
		return nil, verr(CheckParse, "%v", err)
	}
	if err := verifyDigest(ca.PublicKey, r.Signature.Algorithm, msg, sig); err != nil {
		return nil, verr(CheckSignature, "the record was modified or not signed by this CA (%v)", err)
	}
	canon, err := r.Encode()
	if err != nil {
		return nil, verr(CheckParse, "%v", err)
	}
	if !bytes.Equal(canon, data) {
		return nil, verr(CheckCanonical, "the record file differs from its signed encoding (edited by hand, duplicate keys or reformatted)")
	}
	cert, err := ParseCertificatePEM([]byte(r.Certificate.PEM))
	if err != nil {
		return nil, verr(CheckCert, "embedded certificate: %v", err)
	}
	if Fingerprint(cert.Raw) != r.Certificate.SHA256 || FormatSerial(cert.SerialNumber) != r.Certificate.Serial {
		return nil, verr(CheckCert, "embedded certificate does not match the described one")
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, verr(CheckCert, "certificate is not signed by the CA: %v", err)
	}
	if bundle == nil {
		return &r, nil
	}
	sum := Fingerprint(bundle.Data)
	if sum != r.Bundle.SHA256 && (r.LegacyBundle == nil || sum != r.LegacyBundle.SHA256) {
		return nil, verr(CheckBundleHash, "bundle SHA-256 %s is not the one the record certifies (%s)", sum, r.Bundle.SHA256)
	}
	key, leaf, _, err := DecodeBundle(bundle.Data, bundle.Password)
	if err != nil {
		return nil, verr(CheckBundleOpen, "bundle does not open with the password: %v", err)
	}
	if Fingerprint(leaf.Raw) != r.Certificate.SHA256 {
		return nil, verr(CheckBundleCert, "bundle holds certificate sha256:%s, not the record's", Fingerprint(leaf.Raw))
	}
	pk, ok := key.(interface{ Public() crypto.PublicKey })
	if !ok || !publicKeysEqual(leaf.PublicKey, pk.Public()) {
		return nil, verr(CheckBundleCert, "bundle's private key does not match its certificate")
	}
	return &r, nil
}

// ReadRecordFile reads and verifies a record file (see VerifyRecord).
func ReadRecordFile(path string, ca *x509.Certificate, bundle *BundleToVerify) (*Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading record: %w", err)
	}
	return VerifyRecord(data, ca, bundle)
}
