// Package translate turns fusion sets and the gateway section into Envoy v3
// resources: pure functions from configuration to protos. It knows nothing
// about gRPC, snapshots or files; package serve publishes what it builds.
package translate

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/xds/gateway"
)

// Resources are one node group's resources by type URL, the shape
// cachev3.NewSnapshot takes.
type Resources = map[resourcev3.Type][]types.Resource

// FusionSet is what Envoy needs of a fusion set for the TLS handshake. The
// full policy (builds, crypto floor, device context, scoring) is applied by
// mcc authz through ext_authz.
type FusionSet struct {
	ID string
	// Mode decides the handshake: defense validates fully and requires a
	// certificate; detection lets every handshake through (untrusted,
	// missing or mismatched certificates included) so that ext_authz can
	// report the request and the upstream decide.
	Mode threat.Mode
	// IdentityURI is the URI SAN the app's certificate must carry,
	// "mcc://<set>/<app>".
	IdentityURI string
	// CAPEM is the trusted CA bundle (PEM). Required: without a trusted CA
	// Envoy does not even ask the client for a certificate.
	CAPEM []byte
	// CRLPEM holds the set's CRLs (PEM, possibly several), or nil.
	CRLPEM []byte
	// SPKIPins are base64 SHA-256 hashes of accepted leaf public keys.
	SPKIPins []string
}

// Input is everything Build needs.
type Input struct {
	Gateway *gateway.Gateway
	// Sets holds every fusion set the gateway's routes refer to, by id.
	Sets map[string]*FusionSet
}

// Resource names (contract: README, status page, envoyext and tests use them).
const (
	AuthzCluster = "mcc-authz"
	// AccessLogCluster is the access-log service's own cluster, when the
	// gateway section gives authz.access_log_address.
	AccessLogCluster = "mcc-authz-access-log"
	// HandshakeLogName is the log_name of the listener access log that
	// reports every downstream connection (and so every failed handshake)
	// to mcc authz.
	HandshakeLogName = "mcc-handshake"
	// ContextExtensionFusionSet is the ext_authz context extension key that
	// tells mcc authz which fusion set guards the route.
	ContextExtensionFusionSet = "fusion_set"
)

// ListenerName is the Envoy listener for gateway listener name.
func ListenerName(name string) string { return "mcc-listener-" + name }

// RouteConfigName is the RDS route configuration of fusion set id's filter
// chain on gateway listener name. "/" occurs in neither (listener names are
// letters, digits, '.', '_' and '-'; set ids DNS labels), so the name is
// unique.
func RouteConfigName(listener, id string) string { return "mcc-routes-" + listener + "/" + id }

// UpstreamClusterName is the Envoy cluster of gateway upstream name.
func UpstreamClusterName(name string) string { return "mcc-upstream-" + name }

// ValidationSecretName is the SDS secret holding fusion set id's validation
// context (trusted CA, identity SAN, SPKI pins, CRL).
func ValidationSecretName(id string) string { return "mcc-validation-" + id }

// ServerCertSecretName is the SDS secret holding listener's certificate.
func ServerCertSecretName(listener string) string { return "mcc-server-cert-" + listener }

// FilterChainName names the TLS filter chain of fusion set id.
func FilterChainName(id string) string { return "mcc-fusion-set-" + id }
