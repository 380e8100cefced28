package attestation

import (
	"crypto"
	"errors"
	"fmt"
	"regexp"
)

// Mode is a fusion set's `attestation:` setting.
type Mode string

// Modes. The zero Mode is ModeOff: a set that says nothing about attestation
// does not ask for it.
const (
	// ModeRequired: an enrollment without a verified attestation is refused.
	ModeRequired Mode = "required"
	// ModeOptional: an enrollment may omit the attestation; one that is sent
	// must verify (a forged or replayed attestation is an attack, not an
	// absence).
	ModeOptional Mode = "optional"
	// ModeOff: attestations are neither asked for nor read.
	ModeOff Mode = "off"
)

// SecurityLevel is where an attested key lives, weakest first.
type SecurityLevel string

// Security levels, from Android's SecurityLevel enumeration.
const (
	SecuritySoftware  SecurityLevel = "software"
	SecurityTEE       SecurityLevel = "tee"
	SecurityStrongBox SecurityLevel = "strongbox"
)

// DefaultMinSecurityLevel is the minimum when a set names none: a key in
// software can be copied off the device, which is what attestation is there
// to rule out.
const DefaultMinSecurityLevel = SecurityTEE

// rank orders levels; an unknown level ranks below software.
func (l SecurityLevel) rank() int {
	switch l {
	case SecuritySoftware:
		return 1
	case SecurityTEE:
		return 2
	case SecurityStrongBox:
		return 3
	}
	return 0
}

// AtLeast reports whether l is min or stronger.
func (l SecurityLevel) AtLeast(min SecurityLevel) bool {
	return l.rank() > 0 && l.rank() >= min.rank()
}

// Expectations is what a set requires the attestation to say about the app.
type Expectations struct {
	// PackageNames are the application ids the set accepts (at least one
	// attested package must be among them).
	PackageNames []string
	// SigningCertDigests are SHA-256 digests of the app signing certificates
	// the set accepts (at least one attested digest must be among them).
	SigningCertDigests []Digest
	// MinSecurityLevel defaults to DefaultMinSecurityLevel when empty.
	MinSecurityLevel SecurityLevel
}

// minLevel is the effective minimum.
func (e Expectations) minLevel() SecurityLevel {
	if e.MinSecurityLevel == "" {
		return DefaultMinSecurityLevel
	}
	return e.MinSecurityLevel
}

// Policy is a fusion set's attestation settings.
type Policy struct {
	Mode   Mode
	Expect Expectations
}

// packageName is Android's application id syntax: dot-separated segments of
// letters, digits and underscores, each starting with a letter, at least two.
var packageName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$`)

// maxPackageNameLen is the longest application id Android accepts.
const maxPackageNameLen = 255

// Validate reports every problem of the policy, joined.
func (p Policy) Validate() error {
	var errs []error
	switch p.Mode {
	case "", ModeOff:
		return nil
	case ModeRequired, ModeOptional:
	default:
		return fmt.Errorf("attestation: mode %s: want required, optional or off", quote(string(p.Mode)))
	}
	if len(p.Expect.PackageNames) == 0 {
		errs = append(errs, errors.New("attestation: packages: at least one package name is required"))
	}
	for i, name := range p.Expect.PackageNames {
		if len(name) > maxPackageNameLen || !packageName.MatchString(name) {
			errs = append(errs, fmt.Errorf("attestation: packages[%d]: %s is not an Android package name", i, quote(name)))
		}
	}
	if len(p.Expect.SigningCertDigests) == 0 {
		errs = append(errs, errors.New("attestation: signing_cert_digests: at least one SHA-256 digest is required"))
	}
	switch p.Expect.MinSecurityLevel {
	case "", SecurityTEE, SecurityStrongBox:
	case SecuritySoftware:
		errs = append(errs, errors.New("attestation: min_security_level: software proves nothing about where the key is; use tee or strongbox"))
	default:
		errs = append(errs, fmt.Errorf("attestation: min_security_level %s: want tee or strongbox", quote(string(p.Expect.MinSecurityLevel))))
	}
	return errors.Join(errs...)
}

// Evidence is an attestation as an enrollment request carries it.
type Evidence struct {
	Format Format
	Data   []byte
}

// Check applies the policy to an enrollment: the one place the mode is
// decided. It returns (nil, nil) when the mode is off, or optional and no
// evidence was sent; a Result when the evidence verified; an *Error otherwise.
// verifiers are looked up by the evidence's format.
func (p Policy) Check(verifiers []Verifier, ev *Evidence, challenge []byte, key crypto.PublicKey) (*Result, error) {
	switch p.Mode {
	case "", ModeOff:
		return nil, nil
	case ModeRequired, ModeOptional:
	default:
		return nil, refuse(KindMalformed, "policy mode %s is not valid", quote(string(p.Mode)))
	}
	if ev == nil || len(ev.Data) == 0 {
		if p.Mode == ModeOptional {
			return nil, nil
		}
		return nil, refuse(KindMissing, "the fusion set requires a key attestation")
	}
	for _, v := range verifiers {
		if v.Format() == ev.Format {
			return v.Verify(Request{Attestation: ev.Data, Challenge: challenge, PublicKey: key, Expect: p.Expect})
		}
	}
	return nil, refuse(KindUnsupportedFormat, "format %s", quote(string(ev.Format)))
}
