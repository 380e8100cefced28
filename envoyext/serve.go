package envoyext

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/secure"
)

// ServeOptions say where a Service listens and whom it serves.
type ServeOptions struct {
	// GRPC is the listener for ext_authz Check, and for the access-log
	// service too unless AccessLog is set. Required.
	GRPC net.Listener
	// AccessLog, when set, is the only listener of the access-log service;
	// GRPC then serves Check only. Handshake failures feed scores and bans,
	// so they can be taken from a separate address, reachable only by the
	// Envoy that reports them.
	AccessLog net.Listener
	// Creds are the gRPC listeners' transport credentials (TLS with a
	// required client certificate: secure.ServerFlags.GRPCCredentials);
	// nil serves plaintext, which mcc authz allows on loopback only.
	Creds credentials.TransportCredentials
	// CheckPeers, when not empty, are the client-certificate identities
	// (URI SAN, DNS SAN or CN, as secure.PeerIdentities lists them) allowed
	// to call Check. Any other caller gets PERMISSION_DENIED.
	CheckPeers []string
	// AccessLogPeers is the same for the access-log service.
	AccessLogPeers []string
	// MaxRecvMsgSize caps one gRPC message (DefaultMaxRecvMsgSize when 0).
	MaxRecvMsgSize int
	// Admin, when set, serves /healthz, /metrics and /status.
	Admin net.Listener
	// AdminTLS, when set, serves the admin listener over TLS.
	AdminTLS *tls.Config
	// AdminToken, when set, is the bearer token /metrics and /status
	// require.
	AdminToken string
	// ShutdownGrace bounds the graceful stop (default 5s). Access-log
	// streams stay open as long as Envoy runs, so after the grace period
	// the remaining streams are cut and Envoy reconnects elsewhere.
	ShutdownGrace time.Duration
}

// Full method name prefixes of the two services, for the peer check.
const (
	authzMethodPrefix     = "/envoy.service.auth.v3.Authorization/"
	accessLogMethodPrefix = "/envoy.service.accesslog.v3.AccessLogService/"
)

// Serve runs the gRPC and admin servers until ctx is done, then stops them
// gracefully. It returns nil after a shutdown caused by ctx, or the error that
// stopped a server.
func (s *Service) Serve(ctx context.Context, o ServeOptions) error {
	if o.GRPC == nil {
		return errors.New("envoyext: ServeOptions.GRPC is required")
	}
	grace := o.ShutdownGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	maxMsg := o.MaxRecvMsgSize
	if maxMsg <= 0 {
		maxMsg = DefaultMaxRecvMsgSize
	}
	peers := peerPolicy{check: o.CheckPeers, accessLog: o.AccessLogPeers}
	newServer := func() *grpc.Server {
		opts := []grpc.ServerOption{
			// Envoy keeps one HTTP/2 connection per worker and may ping it;
			// tolerate pings down to 10s rather than closing with GOAWAY.
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
			// A larger message is refused before it is read into memory.
			grpc.MaxRecvMsgSize(maxMsg),
			// The peer check runs first: a refused caller reaches nothing.
			grpc.ChainUnaryInterceptor(s.peerUnary(peers), s.recoverUnary),
			grpc.ChainStreamInterceptor(s.peerStream(peers), s.recoverStream),
		}
		if o.Creds != nil {
			opts = append(opts, grpc.Creds(o.Creds))
		}
		return grpc.NewServer(opts...)
	}
	servers := []*grpc.Server{newServer()}
	if o.AccessLog != nil {
		authv3.RegisterAuthorizationServer(servers[0], authzServer{s: s})
		als := newServer()
		accesslogv3.RegisterAccessLogServiceServer(als, accessLogServer{s: s})
		servers = append(servers, als)
	} else {
		s.Register(servers[0])
	}
	listeners := []net.Listener{o.GRPC, o.AccessLog}

	errc := make(chan error, 3)
	for i, gs := range servers {
		go func() {
			if err := gs.Serve(listeners[i]); err != nil {
				errc <- fmt.Errorf("serving gRPC on %s: %w", listeners[i].Addr(), err)
			}
		}()
	}
	var admin *http.Server
	if o.Admin != nil {
		admin = &http.Server{Handler: s.AdminHandler(o.AdminToken), ReadHeaderTimeout: 10 * time.Second, TLSConfig: o.AdminTLS}
		go func() {
			var err error
			if o.AdminTLS != nil {
				err = admin.ServeTLS(o.Admin, "", "")
			} else {
				err = admin.Serve(o.Admin)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving admin on %s: %w", o.Admin.Addr(), err)
			}
		}()
	}
	s.log.Info("mcc authz serving",
		zap.Stringer("grpc", o.GRPC.Addr()),
		zap.Stringer("access_log", addrOf(o.AccessLog)),
		zap.Stringer("admin", addrOf(o.Admin)),
		zap.Bool("tls", o.Creds != nil),
		zap.Strings("check_peers", o.CheckPeers),
		zap.Strings("access_log_peers", o.AccessLogPeers),
		zap.Strings("fusion_sets", s.engine.Config().IDs))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.ready.Store(false)
	var wg sync.WaitGroup
	for _, gs := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopped := make(chan struct{})
			go func() { gs.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(grace):
				gs.Stop()
				<-stopped
			}
		}()
	}
	wg.Wait()
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		_ = admin.Shutdown(sctx)
		cancel()
	}
	s.log.Info("mcc authz stopped")
	return err
}

// peerPolicy is who may call each service.
type peerPolicy struct {
	check, accessLog []string
}

// allowed checks the caller of method against its service's allow-list.
// An empty list admits every caller the transport admitted (with --client-ca,
// any certificate the CA signed; on loopback without TLS, anyone local).
func (s *Service) peerAllowed(ctx context.Context, method string, p peerPolicy) error {
	allow, service := p.check, "check"
	if strings.HasPrefix(method, accessLogMethodPrefix) {
		allow, service = p.accessLog, "access_log"
	} else if !strings.HasPrefix(method, authzMethodPrefix) {
		service = "other"
	}
	if len(allow) == 0 {
		return nil
	}
	ids, ok := secure.PeerIdentities(ctx)
	if ok && secure.Allowed(ids, allow) {
		return nil
	}
	s.metrics.peerRefused.WithLabelValues(service).Inc()
	shown := make([]string, 0, len(ids))
	for i, id := range ids {
		if i == 4 {
			break
		}
		shown = append(shown, clip(id, maxStringLen))
	}
	s.decisionLog.Warn("gRPC caller refused: its client certificate is not an allowed peer",
		zap.String("service", service), zap.Bool("verified_certificate", ok), zap.Strings("identities", shown))
	if !ok {
		return status.Error(codes.PermissionDenied, "a verified client certificate is required")
	}
	return status.Error(codes.PermissionDenied, "client certificate identity not allowed for this service")
}

func (s *Service) peerUnary(p peerPolicy) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := s.peerAllowed(ctx, info.FullMethod, p); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (s *Service) peerStream(p peerPolicy) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := s.peerAllowed(ss.Context(), info.FullMethod, p); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// Watch reloads the fusion set file (and the CA, CRL and revocation files it
// references) when it changes, until ctx is done (see fusion.Engine.Watch:
// file notification, with interval as the safety poll). A file that fails
// to load is logged and counted; the last good config keeps serving.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	s.engine.Watch(ctx, interval,
		func(cfg *fusion.Config) {
			s.status.loaded(cfg, s.clock())
			s.metrics.reloads.WithLabelValues("success").Inc()
			s.log.Info("fusion set file reloaded", zap.String("path", cfg.Path), zap.Strings("fusion_sets", cfg.IDs))
		},
		func(err error) {
			s.status.failed(err, s.clock())
			s.metrics.reloads.WithLabelValues("failure").Inc()
			s.log.Error("fusion set file rejected; the last good version keeps serving", zap.Error(err))
		})
}

func addrOf(l net.Listener) fmt.Stringer {
	if l == nil {
		return noAddr{}
	}
	return l.Addr()
}

type noAddr struct{}

func (noAddr) String() string { return "" }
