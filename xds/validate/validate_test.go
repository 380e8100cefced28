package validate_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mccgate/mcc/xds/validate"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// listenerWithTLS is a valid listener whose filter chain carries tls,
// packed in an Any the way Envoy wants it.
func listenerWithTLS(t *testing.T, tls *tlsv3.DownstreamTlsContext) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: "l",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8443}}}},
		FilterChains: []*listenerv3.FilterChain{{
			TransportSocket: &corev3.TransportSocket{
				Name:       "envoy.transport_sockets.tls",
				ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, tls)},
			},
		}},
	}
}

func sanContext(sanType tlsv3.SubjectAltNameMatcher_SanType) *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: sanType,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "mcc://a/b"}},
			}},
		}},
	}}
}

func TestInvalidMessageInsideAnyIsCaught(t *testing.T) {
	bad := listenerWithTLS(t, sanContext(tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED))
	// The generated validator does not look inside the Any...
	if err := bad.ValidateAll(); err != nil {
		t.Fatalf("precondition: Listener.ValidateAll is expected to miss the Any contents, got %v", err)
	}
	// ...this package does, and says where.
	err := validate.Message(bad)
	if err == nil {
		t.Fatal("SAN_TYPE_UNSPECIFIED inside the transport socket's Any was not caught")
	}
	for _, want := range []string{
		"filter_chains[0].transport_socket.typed_config(envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext)",
		"SanType",
		"SAN_TYPE_UNSPECIFIED",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	if err := validate.Message(listenerWithTLS(t, sanContext(tlsv3.SubjectAltNameMatcher_URI))); err != nil {
		t.Errorf("valid listener refused: %v", err)
	}
}

func TestAnyInsideAnyAndMapsAreWalked(t *testing.T) {
	// ext_authz without a service, inside an HttpFilter Any, inside the HCM Any.
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "x",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "vh", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
					// A per-route override that sets nothing: its oneof is required.
					TypedPerFilterConfig: map[string]*anypb.Any{"envoy.filters.http.ext_authz": mustAny(t, &extauthzv3.ExtAuthzPerRoute{})},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.ext_authz", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &extauthzv3.ExtAuthz{
				StatusOnError: nil, TransportApiVersion: corev3.ApiVersion(99)})}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
		},
	}
	lis := &listenerv3.Listener{
		Name: "l",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8443}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
		}}}},
	}
	err := validate.Message(lis)
	if err == nil {
		t.Fatal("nested invalid messages were not caught")
	}
	for _, want := range []string{
		`route_config.virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.ext_authz"](envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute)`,
		`http_filters[0].typed_config(envoy.extensions.filters.http.ext_authz.v3.ExtAuthz)`,
		"TransportApiVersion",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestUnknownAnyTypeIsRefused(t *testing.T) {
	lis := listenerWithTLS(t, sanContext(tlsv3.SubjectAltNameMatcher_URI))
	lis.FilterChains[0].TransportSocket.GetTypedConfig().TypeUrl = "type.googleapis.com/mcc.NoSuchType"
	err := validate.Message(lis)
	if err == nil || !strings.Contains(err.Error(), "cannot unpack type.googleapis.com/mcc.NoSuchType") {
		t.Errorf("err = %v", err)
	}
}
