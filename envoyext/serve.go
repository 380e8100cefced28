package envoyext

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/mccgate/mcc/fusion"
)

// ServeOptions say where a Service listens.
type ServeOptions struct {
	// GRPC is the listener for ext_authz and the access-log service. Required.
	GRPC net.Listener
	// Admin, when set, serves /healthz and /metrics.
	Admin net.Listener
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// ShutdownGrace bounds the graceful stop (default 5s). Access-log
	// streams stay open as long as Envoy runs, so after the grace period
	// the remaining streams are cut and Envoy reconnects elsewhere.
	ShutdownGrace time.Duration
}

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
	gs := grpc.NewServer(
		// Envoy keeps one HTTP/2 connection per worker and may ping it;
		// tolerate pings down to 10s rather than closing with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ChainUnaryInterceptor(s.recoverUnary),
		grpc.ChainStreamInterceptor(s.recoverStream),
	)
	s.Register(gs)

	errc := make(chan error, 2)
	go func() {
		if err := gs.Serve(o.GRPC); err != nil {
			errc <- fmt.Errorf("serving gRPC on %s: %w", o.GRPC.Addr(), err)
		}
	}()
	var admin *http.Server
	if o.Admin != nil {
		admin = &http.Server{Handler: s.AdminHandler(o.MetricsToken), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := admin.Serve(o.Admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving admin on %s: %w", o.Admin.Addr(), err)
			}
		}()
	}
	s.log.Info("mcc authz serving",
		zap.Stringer("grpc", o.GRPC.Addr()),
		zap.Stringer("admin", addrOf(o.Admin)),
		zap.Strings("fusion_sets", s.engine.Config().IDs))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.ready.Store(false)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		gs.Stop()
		<-stopped
	}
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		_ = admin.Shutdown(sctx)
		cancel()
	}
	s.log.Info("mcc authz stopped")
	return err
}

// Watch reloads the fusion set file (and the CA, CRL and revocation files it
// references) when it changes, until ctx is done. A file that fails to load
// is logged and counted; the last good config keeps serving.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	s.engine.Watch(ctx, interval,
		func(cfg *fusion.Config) {
			s.metrics.reloads.WithLabelValues("success").Inc()
			s.log.Info("fusion set file reloaded", zap.String("path", cfg.Path), zap.Strings("fusion_sets", cfg.IDs))
		},
		func(err error) {
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
