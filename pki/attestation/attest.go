package attestation

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"strings"
)

// Format names an attestation format. It travels in the enrollment request
// next to the attestation bytes, so it is a stable string.
type Format string

// FormatAndroidKey is Android Key Attestation: the attestation bytes are the
// certificate chain KeyStore.getCertificateChain returns, leaf first, as
// concatenated DER certificates.
const FormatAndroidKey Format = "android-key"

// Request is what an enrollment hands a Verifier.
type Request struct {
	// Attestation is the format-specific evidence sent by the client
	// (attacker-controlled: every verifier bounds and checks it).
	Attestation []byte
	// Challenge is the server-chosen nonce this enrollment bound; the
	// attestation must carry exactly these bytes.
	Challenge []byte
	// PublicKey is the key of the enrollment's CSR: the attested key must be
	// this key, or the attestation proves something about another key.
	PublicKey crypto.PublicKey
	// Expect is what the fusion set requires of the attested app.
	Expect Expectations
}

// Verifier checks one attestation format. Implementations are safe for
// concurrent use and do no I/O: roots and revocation data are given to them
// when they are built.
type Verifier interface {
	Format() Format
	Verify(req Request) (*Result, error)
}

// Result is what a verified attestation established.
type Result struct {
	Format Format
	// SecurityLevel is the weaker of the levels the attestation states for
	// the attesting component and for the key store holding the key.
	SecurityLevel SecurityLevel
	// AttestationVersion is the schema version the device reported.
	AttestationVersion int
	// Package is the attested package name that the set allows.
	Package string
	// Packages lists every attested package (several when apps share a UID).
	Packages []PackageInfo
	// SignatureDigests are the SHA-256 digests of the app's signing
	// certificates, as attested.
	SignatureDigests []Digest
	// AppIDSource says which authorization list carried the application id:
	// "software" (the Android keystore daemon, the usual place) or
	// "hardware".
	AppIDSource string
	// Boot is the device's root of trust, when the attestation has one.
	Boot *RootOfTrust
	// ChainSerials are the serial numbers (lowercase hex) of the chain's
	// certificates, leaf first: what a revocation list is checked against.
	ChainSerials []string
}

// PackageInfo is one attested package.
type PackageInfo struct {
	Name    string
	Version int64
}

// RootOfTrust is the verified boot state the secure hardware reported.
type RootOfTrust struct {
	VerifiedBootKey   []byte
	DeviceLocked      bool
	VerifiedBootState BootState
	VerifiedBootHash  []byte
}

// BootState is Android's VerifiedBootState.
type BootState string

// Verified boot states, from the attestation schema's enumeration.
const (
	BootVerified   BootState = "verified"
	BootSelfSigned BootState = "self_signed"
	BootUnverified BootState = "unverified"
	BootFailed     BootState = "failed"
)

// Digest is a SHA-256 digest of an app signing certificate. Its text form is
// lowercase hex; parsing also accepts upper case and the colon-separated form
// apksigner and the Play Console print.
type Digest [32]byte

// ParseDigest reads a digest in hex, with or without colons.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	clean := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if len(clean) != 2*len(d) {
		return d, fmt.Errorf("signing certificate digest: want %d hex digits (SHA-256), got %d", 2*len(d), len(clean))
	}
	if _, err := hex.Decode(d[:], []byte(clean)); err != nil {
		return d, fmt.Errorf("signing certificate digest: %w", err)
	}
	return d, nil
}

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
