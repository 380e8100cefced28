package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
)

// Defaults of Options.
const (
	DefaultWatchInterval   = time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// Options configure a Server.
type Options struct {
	// ConfigPath is the fusion set file with a gateway section.
	ConfigPath string
	// WatchInterval is how often the files are checked for changes.
	WatchInterval time.Duration
	// AdminToken, when set, is required (as a bearer token) by every admin
	// endpoint except /healthz.
	AdminToken string
	// ShutdownTimeout bounds the graceful stop of the gRPC server.
	ShutdownTimeout time.Duration
	Logger          *zap.Logger
}

// Server is the control plane of one fusion set file.
type Server struct {
	opts Options
	log  *zap.Logger
	cp   *serve.ControlPlane

	mu      sync.Mutex // serializes reloads and guards the fields below
	cfg     *Config    // last good configuration
	watched []string
	prints  map[string]filePrint
	lastErr string
}

// NewServer loads the configuration and publishes it. A configuration that
// does not load is an error: the control plane does not start without a
// good one. The control plane's streams live as long as ctx.
func NewServer(ctx context.Context, o Options) (*Server, error) {
	if o.WatchInterval <= 0 {
		o.WatchInterval = DefaultWatchInterval
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Server{opts: o, log: o.Logger, watched: []string{o.ConfigPath}}
	s.cp = serve.New(ctx, serve.Options{Logger: o.Logger})
	if err := s.reload(ctx, true); err != nil {
		return nil, err
	}
	return s, nil
}

// ControlPlane returns the xDS side (status, metrics, snapshots).
func (s *Server) ControlPlane() *serve.ControlPlane { return s.cp }

// Config returns the configuration being served.
func (s *Server) Config() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Reload loads the files now and publishes them if they are good.
func (s *Server) Reload(ctx context.Context) error { return s.reload(ctx, true) }

func (s *Server) reload(ctx context.Context, changed bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	started := time.Now()
	// Fingerprint before reading: a file written while it is being loaded
	// then differs at the next poll and is loaded again, never missed.
	before := fingerprints(s.watched)
	cfg, err := Load(s.opts.ConfigPath)
	var groups map[string]translate.Resources
	if err == nil {
		groups, err = translate.Build(cfg.Input)
	}
	if err != nil {
		// While broken, every poll retries (a missing file may appear),
		// but the same error is reported once. The first load reports
		// nothing: NewServer returns the error.
		if s.cfg != nil && (changed || err.Error() != s.lastErr) {
			s.cp.ConfigError(err)
			s.refused(err)
		}
		s.lastErr = err.Error()
		return err
	}
	if err := s.cp.Publish(ctx, serve.Update{ConfigVersion: cfg.Version, Groups: groups, Started: started}); err != nil {
		if s.cfg != nil && (changed || err.Error() != s.lastErr) {
			s.refused(err)
		}
		s.lastErr = err.Error()
		return err
	}
	if s.lastErr != "" || s.cfg == nil || s.cfg.Version != cfg.Version {
		s.log.Info("configuration loaded", zap.String("file", s.opts.ConfigPath), zap.String("version", cfg.Version),
			zap.Int("fusion_sets", len(cfg.Input.Sets)), zap.Int("node_groups", len(groups)),
			zap.Duration("took", time.Since(started)))
	}
	s.cfg = cfg
	s.lastErr = ""
	s.watched = cfg.Files
	s.prints = fingerprints(cfg.Files)
	for p, fp := range before {
		if _, ok := s.prints[p]; ok {
			s.prints[p] = fp
		}
	}
	return nil
}

func (s *Server) refused(err error) {
	fields := []zap.Field{zap.String("file", s.opts.ConfigPath)}
	if s.cfg != nil {
		fields = append(fields, zap.String("serving_version", s.cfg.Version))
	}
	s.log.Error("configuration refused; the last good configuration keeps serving",
		append(fields, zap.Strings("problems", strings.Split(err.Error(), "\n")))...)
}

// Watch polls the files every WatchInterval and reloads on a change, until
// ctx is done.
func (s *Server) Watch(ctx context.Context) {
	t := time.NewTicker(s.opts.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.poll(ctx)
		}
	}
}

func (s *Server) poll(ctx context.Context) {
	s.mu.Lock()
	now := fingerprints(s.watched)
	changed := !samePrints(now, s.prints)
	broken := s.lastErr != ""
	if changed {
		s.prints = now
	}
	s.mu.Unlock()
	if changed || broken {
		_ = s.reload(ctx, changed)
	}
}

// Serve runs the xDS gRPC server on xdsLis and the admin HTTP server on
// adminLis (nil: no admin port), and watches the files, until ctx is done.
// Then it stops gracefully: in-flight RPCs get ShutdownTimeout, after which
// the servers are stopped hard.
func (s *Server) Serve(ctx context.Context, xdsLis, adminLis net.Listener) error {
	gs := grpc.NewServer(serve.ServerOptions()...)
	s.cp.Register(gs)
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(xdsLis) }()

	var hs *http.Server
	if adminLis != nil {
		hs = &http.Server{Handler: s.cp.AdminHandler(s.opts.AdminToken), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin server: %w", err)
			}
		}()
	}
	s.log.Info("xDS control plane serving", zap.String("xds", xdsLis.Addr().String()), zap.String("admin", listenAddr(adminLis)))

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.Watch(watchCtx)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("xDS server: %w", err)
		}
	}
	s.shutdown(gs, hs)
	return err
}

func (s *Server) shutdown(gs *grpc.Server, hs *http.Server) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(s.opts.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("graceful stop timed out; stopping", zap.Duration("timeout", s.opts.ShutdownTimeout))
		gs.Stop()
	}
	if hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}
	s.log.Info("xDS control plane stopped")
}

func listenAddr(l net.Listener) string {
	if l == nil {
		return "off"
	}
	return l.Addr().String()
}
