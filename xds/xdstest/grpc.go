package xdstest

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/translate"
)

// ProxylessGRPC builds what a proxyless gRPC client (gRPC-Go's xDS resolver)
// needs to dial "xds:///<target>": an API listener named exactly target, its
// route configuration, and an EDS cluster with the endpoints.
//
// It is no part of the fusion set file: mcc protects Envoy listeners, and
// gRPC's xDS client supports none of what those use (SDS, server_names,
// listener filters, SPKI pins, CRLs). Tests use it to run the control plane
// against an independently written xDS client, in a node group of its own
// (such a client asks for its listener by name, so in ADS mode the group's
// snapshot must hold nothing else).
func ProxylessGRPC(target string, endpoints []gateway.Endpoint) (translate.Resources, error) {
	routeName := "mcc-grpc-routes-" + target
	clusterName := translate.UpstreamClusterName(target)
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	var packErr error
	pack := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil && packErr == nil {
			packErr = fmt.Errorf("packing %T: %w", m, err)
		}
		return a
	}
	hcm := pack(&hcmv3.HttpConnectionManager{
		StatPrefix: "mcc.grpc." + target,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeName,
			ConfigSource:    ads,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(&routerv3.Router{})},
		}},
	})
	lis := &listenerv3.Listener{
		Name:        target,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
		// The control plane's reference check follows RDS names wherever
		// they are; Envoy-side tools look in filter chains only: repeat
		// the HCM there (gRPC ignores it).
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
	cluster := &clusterv3.Cluster{
		Name:                 clusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads, ServiceName: clusterName},
		ConnectTimeout:       durationpb.New(gateway.DefaultUpstreamConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	var lb []*endpointv3.LbEndpoint
	for _, e := range endpoints {
		lb = append(lb, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: e.IP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: e.Port},
			}}},
		}}})
	}
	// gRPC drops a locality without a weight.
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: clusterName, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1), LbEndpoints: lb,
	}}}
	if packErr != nil {
		return nil, packErr
	}
	return translate.Resources{
		resourcev3.ListenerType: {lis},
		resourcev3.RouteType:    {rc},
		resourcev3.ClusterType:  {cluster},
		resourcev3.EndpointType: {cla},
	}, nil
}
