package serve

import (
	"context"
	"sync"
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

// ServerOptions are the gRPC server options for the control plane's
// server, extra (such as grpc.Creds) appended:
//
//   - keepalives find dead Envoys;
//   - at most DefaultMaxStreamsPerConnection concurrent streams per
//     connection (an Envoy opens one ADS stream) and requests of at most
//     DefaultMaxRecvMsgSize bytes (an Envoy's are a few KiB, even with a
//     NACK), so one client cannot exhaust the process;
//   - the stream guard, which ends a stream the moment a new configuration
//     takes its node group away from its certificate.
func (cp *ControlPlane) ServerOptions(extra ...grpc.ServerOption) []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.MaxConcurrentStreams(DefaultMaxStreamsPerConnection),
		grpc.MaxRecvMsgSize(DefaultMaxRecvMsgSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
		grpc.ChainStreamInterceptor(guardStream),
	}, extra...)
}

// streamGuard lets the control plane cut a stream off: once revoked, every
// send on the stream fails with the revocation's error, which ends it.
type streamGuard struct {
	mu  sync.Mutex
	err error
}

func (g *streamGuard) revoke(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
}

func (g *streamGuard) revoked() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

type guardKey struct{}

// guardedStream is a server stream with a guard in its context (where
// OnStreamOpen finds it) and on its send path.
type guardedStream struct {
	grpc.ServerStream
	ctx   context.Context
	guard *streamGuard
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) SendMsg(m any) error {
	if err := s.guard.revoked(); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

func guardStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	g := &streamGuard{}
	return handler(srv, &guardedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), guardKey{}, g), guard: g})
}
