package threat

// Reason is a stable, SCREAMING_SNAKE reason code. Reason codes are part of the
// event contract (schema mcc.threat-event/v1): never rename one, only add.
type Reason string

// Reason codes, one per failure class. DESIGN.md lists them; the JSON Schema in
// schema/threat-event.v1.json enumerates them.
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
	ReasonRateAnomaly       Reason = "RATE_ANOMALY"
	ReasonFailSafeActive    Reason = "FAIL_SAFE_ACTIVE"
	ReasonHandshakeFailed   Reason = "HANDSHAKE_FAILED"
	ReasonSpoofedCertHeader Reason = "SPOOFED_CERT_HEADER"
	// ReasonConfigError is a request for a fusion set the gateway does not
	// know: always a deny, never an allow.
	ReasonConfigError Reason = "CONFIG_ERROR"
)

// AllReasons lists every reason code, in a stable order.
var AllReasons = []Reason{
	ReasonNoClientCert, ReasonCertUntrusted, ReasonCertExpired, ReasonCertNotYetValid,
	ReasonCertRevoked, ReasonIdentityMismatch, ReasonWeakCrypto, ReasonWrongKeyUsage,
	ReasonCertMalformed, ReasonBuildBlocked, ReasonRateAnomaly, ReasonFailSafeActive,
	ReasonHandshakeFailed, ReasonSpoofedCertHeader, ReasonConfigError,
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
	ReasonRateAnomaly:       20,
	ReasonFailSafeActive:    0,
	ReasonHandshakeFailed:   20,
	ReasonSpoofedCertHeader: 50,
	ReasonConfigError:       0,
}

// Valid reports whether r is a known reason code.
func (r Reason) Valid() bool {
	_, ok := DefaultScores[r]
	return ok
}
