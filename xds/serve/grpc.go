package serve

import (
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Register adds ADS (state of the world and delta) and the per-type
// discovery services to s.
func (cp *ControlPlane) Register(s grpc.ServiceRegistrar) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s, cp.server)
	listenerservice.RegisterListenerDiscoveryServiceServer(s, cp.server)
	routeservice.RegisterRouteDiscoveryServiceServer(s, cp.server)
	clusterservice.RegisterClusterDiscoveryServiceServer(s, cp.server)
	endpointservice.RegisterEndpointDiscoveryServiceServer(s, cp.server)
	secretservice.RegisterSecretDiscoveryServiceServer(s, cp.server)
}

// ServerOptions are gRPC server options suited to long-lived xDS streams:
// keepalives find dead Envoys, and the stream limit is far above any fleet.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	}
}
