package fusion

import (
	"crypto/x509"
	"net/http"
	"time"

	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// IdentityURIScheme is the scheme of the app identity URI SAN.
const IdentityURIScheme = certid.Scheme

// IdentityURI returns the URI SAN that binds a certificate to a fusion set and
// an app: "mcc://<fusion-set-id>/<app-id>". Envoy enforces it natively with
// match_typed_subject_alt_names (URI, exact); the engine applies the same rule.
func IdentityURI(setID, appID string) string {
	return certid.IdentityURI(setID, appID)
}

// Request is what a gateway knows about one request (or one handshake).
type Request struct {
	// PeerCertificates is the raw DER chain the client presented, leaf first.
	// Empty when the client presented none.
	PeerCertificates [][]byte
	// VerifiedChains are chains the TLS stack already verified (Caddy's
	// r.TLS.VerifiedChains). The engine reuses them only when they end in
	// one of the fusion set's trusted CAs; otherwise it verifies itself.
	VerifiedChains [][]*x509.Certificate

	ClientIP string
	SNI      string
	Host     string
	Method   string
	Path     string
	// Header carries the request headers (canonical keys) from which the
	// fusion set's device_headers are read. May be nil.
	Header http.Header
	// RequestID becomes the event's externalID. Generated when empty.
	RequestID string
	// Gateway is threat.GatewayCaddy or threat.GatewayEnvoy; Node names the
	// gateway instance.
	Gateway string
	Node    string

	// Reason, when set, is a failure the gateway already observed (for
	// example HANDSHAKE_FAILED from a TLS verifier or an access log, or
	// SPOOFED_CERT_HEADER). The engine scores and reports it instead of
	// evaluating a certificate; ReasonData adds details.
	Reason     threat.Reason
	ReasonData map[string]any

	// Purpose is what the certificate is presented for: PurposeAccess (the
	// zero value) at the gateways; mcc server's enrollment and renewal set
	// PurposeEnroll and PurposeRenew.
	Purpose Purpose

	// Handshake is set by TLS-stage callers (the Caddy verifier): a failure
	// is then reported as HANDSHAKE_FAILED with reasonData.cause set to the
	// specific reason code.
	Handshake bool
}

// Action is the gateway's verdict for a request.
type Action int

const (
	Allow Action = iota
	Block
)

func (a Action) String() string {
	if a == Block {
		return "block"
	}
	return "allow"
}

// Decision is the engine's answer for one request.
type Decision struct {
	Action Action
	// Status and Message are set when Action is Block.
	Status  int
	Message string
	// Reason is the failure found, or "" when the certificate is good.
	Reason    threat.Reason
	FusionSet string
	Mode      threat.Mode
	// Event is the threat event for this request (nil when Reason is "").
	// It is built even when the set's events are off, so gateways can log
	// and pass it on; Emitted says whether it went to the sinks.
	Event   *threat.Event
	Emitted bool
	// Cert identifies the leaf when one could be parsed (for placeholders
	// and logs); AppID and BuildID are empty when the leaf lacks them. It
	// is shared with the verdict cache: read it, never modify it.
	Cert *threat.CertInfo
	// CacheHit reports that the certificate verdict came from the cache.
	CacheHit bool
}

// Clock returns the current time; injected so tests can move time.
type Clock func() time.Time
