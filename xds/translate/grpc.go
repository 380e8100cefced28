package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/mccgate/mcc/xds/gateway"
)

// ProxylessGRPC builds what a proxyless gRPC client (gRPC-Go's xDS resolver)
// needs to dial "xds:///<target>": an API listener named exactly target, its
// route configuration, and an EDS cluster with the endpoints.
//
// It is not part of the fusion set file: mcc protects Envoy listeners, and
// gRPC's xDS client supports none of what those use (SDS, server_names,
// listener filters, SPKI pins, CRLs). Tests use it to run the control plane
// against an independently written xDS client, in a node group of its own
// (such a client asks for its listener by name, so in ADS mode the group's
// snapshot must hold nothing else).
func ProxylessGRPC(target string, endpoints []gateway.Endpoint) (Resources, error) {
	p := &packer{}
	routeName := "mcc-grpc-routes-" + target
	clusterName := UpstreamClusterName(target)
	hcm := p.any(&hcmv3.HttpConnectionManager{
		StatPrefix: "mcc.grpc." + target,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeName,
			ConfigSource:    adsSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: p.any(&routerv3.Router{})},
		}},
	})
	lis := &listenerv3.Listener{
		Name:        target,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
		// Snapshot.Consistent counts RDS references in filter chains only,
		// not in api_listener: repeat the HCM there (gRPC ignores it).
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}},
	}
	rc := &routev3.RouteConfiguration{
		Name: routeName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    target,
			Domains: []string{target},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusterName},
				}},
			}},
		}},
	}
	if p.err != nil {
		return nil, p.err
	}
	return Resources{
		resourcev3.ListenerType: {lis},
		resourcev3.RouteType:    {rc},
		resourcev3.ClusterType:  {edsCluster(p, clusterName, DefaultGRPCConnectTimeout, false)},
		resourcev3.EndpointType: {loadAssignment(clusterName, endpoints)},
	}, nil
}

// DefaultGRPCConnectTimeout is the connect timeout of ProxylessGRPC clusters.
const DefaultGRPCConnectTimeout = gateway.DefaultUpstreamConnectTimeout
