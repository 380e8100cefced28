package translate

import (
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mccgate/mcc/xds/gateway"
)

// TCPGrpcAccessLog is the extension name of the gRPC TCP access logger
// (go-control-plane's wellknown has no constant for it).
const TCPGrpcAccessLog = "envoy.access_loggers.tcp_grpc"

// listener builds mcc-listener-<name>: tls_inspector reads the SNI, one TLS
// filter chain per fusion set (chains, by set id, in the order of ids) is
// selected by it, and a listener access log reports every connection,
// failed handshakes included, to mcc authz through logCluster.
func listener(p *packer, l *gateway.Listener, ids []string, chains map[string]types.Resource, logCluster string) *listenerv3.Listener {
	out := &listenerv3.Listener{
		Name:    ListenerName(l.Name),
		Address: socketAddress(l.Address, l.Port),
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name: wellknown.TLSInspector,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: p.any(&tlsinspectorv3.TlsInspector{
				// JA3 lands in the access log's TLS properties: a useful
				// fingerprint for threat events about failed handshakes.
				EnableJa3Fingerprinting: wrapperspb.Bool(true),
			})},
		}},
		// Only the listener access log sees handshake failures; an HCM
		// access log never does (the HTTP layer is not reached).
		AccessLog: []*accesslogv3.AccessLog{handshakeLog(p, logCluster)},
	}
	for _, id := range ids {
		out.FilterChains = append(out.FilterChains, chains[id].(*listenerv3.FilterChain))
	}
	return out
}

// filterChain is fusion set s's TLS filter chain on listener l, selected by
// the SNI of the set's hosts there.
func filterChain(p *packer, l *gateway.Listener, s *FusionSet, hosts []string, authzTimeout time.Duration) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		Name: FilterChainName(s.ID),
		FilterChainMatch: &listenerv3.FilterChainMatch{
			ServerNames:       hosts,
			TransportProtocol: "tls",
		},
		TransportSocket: &corev3.TransportSocket{
			Name:       wellknown.TransportSocketTLS,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: p.any(downstreamTLS(l, s))},
		},
		Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(httpConnectionManager(p, l, s, authzTimeout))},
		}},
	}
}

func httpConnectionManager(p *packer, l *gateway.Listener, s *FusionSet, authzTimeout time.Duration) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: "mcc." + l.Name + "." + s.ID,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: RouteConfigName(l.Name, s.ID),
			ConfigSource:    adsSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: wellknown.HTTPExternalAuthorization, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: p.any(extAuthz(authzTimeout))}},
			{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: p.any(&routerv3.Router{})}},
		},
		// The edge: the client address is the connection's, not a header's.
		UseRemoteAddress: wrapperspb.Bool(true),
		// Virtual hosts list bare host names; "host:8443" must match too.
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		// XFCC: drop whatever the client sent and set it from this
		// connection, so the upstream gets the certificate Envoy saw and
		// nobody can forge the header. Chain carries the intermediates
		// too: ext_authz only receives the leaf, and mcc authz needs the
		// presented chain to verify through intermediates and to see an
		// over-long chain.
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_SANITIZE_SET,
		SetCurrentClientCertDetails: &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{
			Subject: wrapperspb.Bool(true),
			Uri:     true,
			Cert:    true,
			Chain:   true,
		},
	}
}

// extAuthz calls mcc authz for every request, with the peer certificate;
// the route tells it the fusion set (context_extensions). When mcc authz
// cannot answer, the request fails closed with 503 (not 403: an outage is
// not a policy decision).
func extAuthz(timeout time.Duration) *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services:               &extauthzv3.ExtAuthz_GrpcService{GrpcService: authzService(AuthzCluster, timeout)},
		TransportApiVersion:    corev3.ApiVersion_V3,
		FailureModeAllow:       false,
		IncludePeerCertificate: true,
		IncludeTlsSession:      true,
		StatusOnError:          &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
	}
}

// ExtAuthzPerRoute names the fusion set of a route for mcc authz.
func ExtAuthzPerRoute(fusionSet string) *extauthzv3.ExtAuthzPerRoute {
	return &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthzv3.CheckSettings{
			ContextExtensions: map[string]string{ContextExtensionFusionSet: fusionSet},
		},
	}}
}

// handshakeLog streams one TCPAccessLogEntry per downstream connection to
// mcc authz; a non-empty downstream_transport_failure_reason is a failed
// handshake. No filter: a response-flag filter would hide exactly those.
func handshakeLog(p *packer, cluster string) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{
		Name: TCPGrpcAccessLog,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: p.any(&grpcalsv3.TcpGrpcAccessLogConfig{
			CommonConfig: &grpcalsv3.CommonGrpcAccessLogConfig{
				LogName:             HandshakeLogName,
				GrpcService:         authzService(cluster, 0),
				TransportApiVersion: corev3.ApiVersion_V3,
			},
		})},
	}
}
