package threat

// Reason is a stable, SCREAMING_SNAKE reason code. Reason codes are part of the
// event contract (schema mcc.threat-event/v1): never rename one, only add.
type Reason string

// Reason codes, one per failure class. docs/ARCHITECTURE.md ("Reason codes")
// lists them; the JSON Schema in schema/threat-event.v1.json enumerates them.
// A code is added here only together with the code that produces it.
const (
	ReasonNone              Reason = ""
	ReasonNoClientCert      Reason = "NO_CLIENT_CERT"
	ReasonCertUntrusted     Reason = "CERT_UNTRUSTED"
	ReasonCertExpired       Reason = "CERT_EXPIRED"
	ReasonCertNotYetValid   Reason = "CERT_NOT_YET_VALID"
	ReasonCertRevoked       Reason = "CERT_REVOKED"
	ReasonIdentityMismatch  Reason = "IDENTITY_MISMATCH"
	ReasonWeakCrypto        Reason = "WEAK_CRYPTO"
	ReasonWrongKeyUsage     Reason = "WRONG_KEY_USAGE"
	ReasonCertMalformed     Reason = "CERT_MALFORMED"
	ReasonBuildBlocked      Reason = "BUILD_BLOCKED"
	ReasonFailSafeActive    Reason = "FAIL_SAFE_ACTIVE"
	ReasonHandshakeFailed   Reason = "HANDSHAKE_FAILED"
	ReasonSpoofedCertHeader Reason = "SPOOFED_CERT_HEADER"
	// ReasonConfigError is a request for a fusion set the gateway does not
	// know: always a deny, never an allow.
	ReasonConfigError Reason = "CONFIG_ERROR"
	// ReasonRateAnomaly is clone detection: a certificate that verifies
	// was used from more distinct client addresses or device ids within
	// the set's window than its clone_detection thresholds allow. It is
	// reported, never blocked, and scores the client, never the
	// certificate (see ClonePolicy).
	ReasonRateAnomaly Reason = "RATE_ANOMALY"
	// ReasonCertKindRefused is a certificate the set's CA issued, of a
	// kind the set does not accept for what it was presented for
	// (installs.accept): typically a build certificate, shipped in every
	// copy of the app, used on the routes of a set that wants install
	// certificates, the signature of a bundle pulled out of the app.
	ReasonCertKindRefused Reason = "CERT_KIND_REFUSED"
)

// AllReasons lists every reason code, in a stable order.
var AllReasons = []Reason{
	ReasonNoClientCert, ReasonCertUntrusted, ReasonCertExpired, ReasonCertNotYetValid,
	ReasonCertRevoked, ReasonIdentityMismatch, ReasonWeakCrypto, ReasonWrongKeyUsage,
	ReasonCertMalformed, ReasonBuildBlocked, ReasonFailSafeActive,
	ReasonHandshakeFailed, ReasonSpoofedCertHeader, ReasonConfigError,
	ReasonRateAnomaly, ReasonCertKindRefused,
}

// DefaultScores is the per-event score of each reason when a fusion set does
// not override it. Untrusted or forged material scores higher than a
// client that merely forgot its certificate or runs an old build.
var DefaultScores = map[Reason]int{
	ReasonNoClientCert:      10,
	ReasonCertUntrusted:     30,
	ReasonCertExpired:       10,
	ReasonCertNotYetValid:   10,
	ReasonCertRevoked:       50,
	ReasonIdentityMismatch:  40,
	ReasonWeakCrypto:        30,
	ReasonWrongKeyUsage:     30,
	ReasonCertMalformed:     40,
	ReasonBuildBlocked:      20,
	ReasonFailSafeActive:    0,
	ReasonHandshakeFailed:   20,
	ReasonSpoofedCertHeader: 50,
	ReasonConfigError:       0,
	ReasonRateAnomaly:       10,
	ReasonCertKindRefused:   30,
}

// Valid reports whether r is a known reason code.
func (r Reason) Valid() bool {
	_, ok := DefaultScores[r]
	return ok
}

// reasonSubjects is the one table of which subjects each reason scores (the
// README's "Which subjects a reason scores" is this table). A subject kind
// missing here is never scored for that reason.
//
// The client's address and device id are scored for every failure the
// client causes: they are that one client's. The certificate is scored only
// for reasons that say the certificate itself is the attacker's material
// (it does not chain to the set's CA, is malformed, or is weak), and even
// then the engine scores it only when it checked that leaf itself and the
// leaf did not verify against the set's CA: a certificate the CA issued is
// shared by every genuine install of a build, so what one client does with
// it (extra certificates in the chain, a chain over the caps, a spoofed
// header, a failed handshake, a replay from a banned address) must not ban
// it for all of them. Revocation is the operator's tool for a genuine
// certificate that must go. A fusion set's fail_safe.subjects narrows this
// table further; it never widens it.
var reasonSubjects = map[Reason]SubjectSet{
	ReasonNoClientCert:      ClientSubjects,
	ReasonCertUntrusted:     AllSubjects,
	ReasonCertExpired:       ClientSubjects,
	ReasonCertNotYetValid:   ClientSubjects,
	ReasonCertRevoked:       ClientSubjects,
	ReasonIdentityMismatch:  ClientSubjects,
	ReasonWeakCrypto:        AllSubjects,
	ReasonWrongKeyUsage:     AllSubjects,
	ReasonCertMalformed:     AllSubjects,
	ReasonBuildBlocked:      ClientSubjects,
	ReasonFailSafeActive:    NoSubjects,
	ReasonHandshakeFailed:   ClientSubjects,
	ReasonSpoofedCertHeader: ClientSubjects,
	ReasonConfigError:       NoSubjects,
	// The client that pushed the certificate over the threshold, never
	// the certificate: a build certificate is every install's.
	ReasonRateAnomaly: ClientSubjects,
	// The client that used a build certificate off enrollment, never the
	// certificate: it is every install's.
	ReasonCertKindRefused: ClientSubjects,
}

// Subjects returns the subject kinds a failure with reason r may score (see
// reasonSubjects for the rule on certificates).
func (r Reason) Subjects() SubjectSet { return reasonSubjects[r] }
