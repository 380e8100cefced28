package xds

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

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

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
	// WatchInterval is the safety poll of the files (changes are noticed
	// at once through file notifications; the poll catches what those
	// miss) and how often a refused configuration is retried.
	WatchInterval time.Duration
	// AdminToken, when set, is required (as a bearer token) by every admin
	// endpoint except /healthz.
	AdminToken string
	// ShutdownTimeout bounds the graceful stop of the gRPC server.
	ShutdownTimeout time.Duration
	Logger          *zap.Logger
	// Creds, when set, secure the xDS listener (secure.ServerFlags
	// .GRPCCredentials: TLS, and with a client CA, mTLS).
	Creds credentials.TransportCredentials
	// ClientCertificates says that Creds require a verified client
	// certificate: node groups are then served only to their peers. It
	// only shapes the warnings at load; the check itself reads each
	// connection's certificate.
	ClientCertificates bool
	// AdminTLS, when set, serves the admin listener over TLS.
	AdminTLS *tls.Config
	// Limits of the control plane (zero: serve's defaults).
	MaxNodes, MaxStreams, MaxNACKDetail int
}

// Server is the control plane of one fusion set file.
type Server struct {
	opts Options
	log  *zap.Logger
	cp   *serve.ControlPlane

	mu      sync.Mutex // serializes reloads and guards the fields below
	cfg     *Config    // last good configuration
	watched []string   // the files of the last good configuration
	lastErr string
	// tr remembers the last translation: a reload translates only what
	// changed, and hands unchanged resources to the control plane as the
	// same protos, which it then neither hashes nor validates again.
	tr *translate.Translator
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
	s := &Server{opts: o, log: o.Logger, watched: []string{o.ConfigPath}, tr: translate.NewTranslator()}
	s.cp = serve.New(ctx, serve.Options{Logger: o.Logger, MaxNodes: o.MaxNodes, MaxStreams: o.MaxStreams, MaxNACKDetail: o.MaxNACKDetail})
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
	cfg, err := Load(s.opts.ConfigPath)
	loaded := time.Now()
	var groups map[string]translate.Resources
	if err == nil {
		groups, err = s.tr.Build(cfg.Input)
	}
	translated := time.Now()
	if err != nil {
		// While broken, Watch retries (a missing file may appear), but
		// the same error is reported once. The first load reports
		// nothing: NewServer returns the error.
		if s.cfg != nil && (changed || err.Error() != s.lastErr) {
			s.cp.ConfigError(err)
			s.refused(err)
		}
		s.lastErr = err.Error()
		return err
	}
	peers := map[string][]string{}
	for _, ng := range cfg.Gateway.NodeGroups {
		peers[ng.Cluster] = ng.Peers
	}
	var warnings []string
	for _, p := range cfg.CRLProblems {
		warnings = append(warnings, p.Error())
	}
	if err := s.cp.Publish(ctx, serve.Update{ConfigVersion: cfg.Version, Groups: groups, Peers: peers, Warnings: warnings, Started: started}); err != nil {
		if s.cfg != nil && (changed || err.Error() != s.lastErr) {
			s.refused(err)
		}
		s.lastErr = err.Error()
		return err
	}
	if s.lastErr != "" || s.cfg == nil || s.cfg.Version != cfg.Version {
		s.log.Info("configuration loaded", zap.String("file", s.opts.ConfigPath), zap.String("version", cfg.Version),
			zap.Int("fusion_sets", len(cfg.Input.Sets)), zap.Int("node_groups", len(groups)),
			zap.Duration("took", time.Since(started)), zap.Duration("load", loaded.Sub(started)),
			zap.Duration("translate", translated.Sub(loaded)), zap.Duration("publish", time.Since(translated)))
		s.warnPeers(cfg)
		for _, p := range cfg.CRLProblems {
			if strings.HasPrefix(p.Msg, "warning:") {
				s.log.Warn("CRL close to expiry", zap.String("problem", p.Error()))
			} else {
				s.log.Error("CRL expired: Envoy refuses every certificate it covers until it is re-signed", zap.String("problem", p.Error()))
			}
		}
	}
	s.cfg = cfg
	s.lastErr = ""
	s.watched = cfg.Files
	return nil
}

// warnPeers says which node groups no Envoy can receive, given whether
// client certificates are asked for.
func (s *Server) warnPeers(cfg *Config) {
	for _, ng := range cfg.Gateway.NodeGroups {
		switch {
		case s.opts.ClientCertificates && len(ng.Peers) == 0:
			s.log.Warn("node group lists no peers: with client certificates on, no Envoy may act as it (list its certificate identities in gateway.node_groups[].peers)",
				zap.String("group", ng.Cluster))
		case !s.opts.ClientCertificates && len(ng.Peers) > 0:
			s.log.Warn("node group lists peers, but mcc xds asks for no client certificates (--client-ca): no Envoy can prove to be one, so the group is served to no one",
				zap.String("group", ng.Cluster), zap.Strings("peers", ng.Peers))
		}
	}
}

func (s *Server) refused(err error) {
	fields := []zap.Field{zap.String("file", s.opts.ConfigPath)}
	if s.cfg != nil {
		fields = append(fields, zap.String("serving_version", s.cfg.Version))
	}
	s.log.Error("configuration refused; the last good configuration keeps serving",
		append(fields, zap.Strings("problems", strings.Split(err.Error(), "\n")))...)
}

// Serve runs the xDS gRPC server on xdsLis and the admin HTTP server on
// adminLis (nil: no admin port), and watches the files, until ctx is done.
// Then it stops gracefully: in-flight RPCs get ShutdownTimeout, after which
// the servers are stopped hard.
func (s *Server) Serve(ctx context.Context, xdsLis, adminLis net.Listener) error {
	var extra []grpc.ServerOption
	if s.opts.Creds != nil {
		extra = append(extra, grpc.Creds(s.opts.Creds))
	}
	gs := grpc.NewServer(s.cp.ServerOptions(extra...)...)
	s.cp.Register(gs)
	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(xdsLis) }()

	var hs *http.Server
	if adminLis != nil {
		if s.opts.AdminTLS != nil {
			adminLis = tls.NewListener(adminLis, s.opts.AdminTLS)
		}
		hs = &http.Server{Handler: s.cp.AdminHandler(s.opts.AdminToken), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: zap.NewStdLog(s.log.Named("admin"))}
		go func() {
			if err := hs.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin server: %w", err)
			}
		}()
	}
	s.log.Info("xDS control plane serving", zap.String("xds", xdsLis.Addr().String()), zap.String("admin", listenAddr(adminLis)),
		zap.Bool("tls", s.opts.Creds != nil), zap.Bool("client_certificates", s.opts.ClientCertificates), zap.Bool("admin_tls", s.opts.AdminTLS != nil))

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		if err := s.Watch(watchCtx); err != nil {
			errc <- fmt.Errorf("watching the configuration: %w", err)
		}
	}()

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
