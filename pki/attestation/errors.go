package attestation

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Kind says which check refused an attestation. The values are stable: the
// enrollment API and threat events carry them.
type Kind string

// Refusal kinds.
const (
	// KindMissing: the set requires an attestation and none was sent.
	KindMissing Kind = "missing"
	// KindUnsupportedFormat: no verifier for the format the client named.
	KindUnsupportedFormat Kind = "unsupported_format"
	// KindMalformed: the evidence cannot be parsed, breaks a size limit, or
	// lacks a field the checks need.
	KindMalformed Kind = "malformed"
	// KindUntrustedChain: the chain does not lead to a configured root, a
	// signature or name link is broken, a certificate is outside its
	// validity, or the chain was extended below the attested certificate.
	KindUntrustedChain Kind = "untrusted_chain"
	// KindRevoked: a certificate of the chain is on the revocation list.
	KindRevoked Kind = "revoked"
	// KindChallengeMismatch: the attested challenge is not this enrollment's.
	KindChallengeMismatch Kind = "challenge_mismatch"
	// KindKeyMismatch: the attested key is not the CSR's key.
	KindKeyMismatch Kind = "key_mismatch"
	// KindSecurityLevel: the key is held at a lower level than the set's
	// minimum (Software when TEE is required, TEE when StrongBox is).
	KindSecurityLevel Kind = "security_level_too_low"
	// KindPackageNotAllowed: no attested package is one the set allows.
	KindPackageNotAllowed Kind = "package_not_allowed"
	// KindDigestNotAllowed: no attested signing certificate digest is one
	// the set allows.
	KindDigestNotAllowed Kind = "signature_digest_not_allowed"
)

// Error is a refused attestation. Detail never holds the attestation bytes or
// the challenge; strings copied from the evidence are quoted and cut short.
type Error struct {
	Kind   Kind
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := "attestation refused: " + string(e.Kind)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrChallengeMismatch) and the like match on Kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Detail == "" && t.Err == nil && t.Kind == e.Kind
}

// Sentinels for errors.Is, one per Kind.
var (
	ErrMissing           = &Error{Kind: KindMissing}
	ErrUnsupportedFormat = &Error{Kind: KindUnsupportedFormat}
	ErrMalformed         = &Error{Kind: KindMalformed}
	ErrUntrustedChain    = &Error{Kind: KindUntrustedChain}
	ErrRevoked           = &Error{Kind: KindRevoked}
	ErrChallengeMismatch = &Error{Kind: KindChallengeMismatch}
	ErrKeyMismatch       = &Error{Kind: KindKeyMismatch}
	ErrSecurityLevel     = &Error{Kind: KindSecurityLevel}
	ErrPackageNotAllowed = &Error{Kind: KindPackageNotAllowed}
	ErrDigestNotAllowed  = &Error{Kind: KindDigestNotAllowed}
)

// KindOf returns the Kind of a refusal, or "" when err is nil or not one.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

func refuse(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

func refuseWrap(kind Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...), Err: err}
}

// maxQuoted bounds how much of an attacker-chosen string reaches an error.
const maxQuoted = 64

// quote renders evidence text for an error message: cut at a UTF-8 boundary
// and quoted, so control characters cannot forge log lines.
func quote(s string) string {
	if len(s) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q…", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
