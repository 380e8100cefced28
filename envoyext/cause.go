package envoyext

import (
	"strings"

	"github.com/mccgate/mcc/threat"
)

// handshakeCauses maps fragments of BoringSSL's error text, as Envoy reports
// it in downstream_transport_failure_reason, to the specific reason code the
// engine would have given had it seen the certificate. The first match wins,
// so specific verification errors come before the generic one.
var handshakeCauses = []struct {
	fragment string
	cause    threat.Reason
}{
	{"PEER_DID_NOT_RETURN_A_CERTIFICATE", threat.ReasonNoClientCert},
	{"certificate has expired", threat.ReasonCertExpired},
	{"certificate is not yet valid", threat.ReasonCertNotYetValid},
	{"certificate revoked", threat.ReasonCertRevoked},
	{"SAN matcher", threat.ReasonIdentityMismatch},
	{"unsupported certificate purpose", threat.ReasonWrongKeyUsage},
	{"CERTIFICATE_VERIFY_FAILED", threat.ReasonCertUntrusted},
}

// handshakeCause classifies a transport failure reason; "" when unknown
// (plain TLS alerts, clients that hung up mid-handshake, non-TLS bytes).
func handshakeCause(failure string) threat.Reason {
	for _, c := range handshakeCauses {
		if strings.Contains(failure, c.fragment) {
			return c.cause
		}
	}
	return ""
}
