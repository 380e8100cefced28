package translate

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mccgate/mcc/xds/gateway"
)

// HTTPProtocolOptionsKey is where a cluster's HTTP protocol options go in
// typed_extension_protocol_options.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// authzConnectTimeout is short: mcc authz runs next to Envoy.
const authzConnectTimeout = time.Second

// edsCluster is an EDS cluster whose endpoints come over ADS under the
// cluster's own name.
func edsCluster(p *packer, name string, connectTimeout time.Duration, http2 bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			HTTPProtocolOptionsKey: p.any(&httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
						},
					},
				},
			}),
		}
	}
	return c
}

// authzCluster is mcc-authz (or mcc-authz-access-log): gRPC, so HTTP/2,
// over mTLS when the gateway section says how.
func authzCluster(p *packer, name string, a gateway.Authz) *clusterv3.Cluster {
	c := edsCluster(p, name, authzConnectTimeout, true)
	if a.TLS != nil {
		c.TransportSocket = upstreamTLS(p, a.TLS)
	}
	return c
}

// accessLogCluster is the cluster the listener access log streams to.
func accessLogCluster(a gateway.Authz) string {
	if a.AccessLogAddress.Port != 0 {
		return AccessLogCluster
	}
	return AuthzCluster
}

func upstreamCluster(p *packer, u *gateway.Upstream) *clusterv3.Cluster {
	return edsCluster(p, UpstreamClusterName(u.Name), u.ConnectTimeout, u.HTTP2)
}

// loadAssignment lists a cluster's endpoints (EDS).
func loadAssignment(cluster string, endpoints []gateway.Endpoint) *endpointv3.ClusterLoadAssignment {
	lb := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, e := range endpoints {
		lb = append(lb, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.IP, e.Port)}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		// A locality with a weight: Envoy ignores both unless locality
		// weighted balancing is on, gRPC clients drop a locality without.
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints:         lb,
		}},
	}
}
