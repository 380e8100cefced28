package envoyext

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// ContextKeyFusionSet is the ext_authz context extension that names the
// fusion set of a route. The control plane sets it per route.
const ContextKeyFusionSet = "fusion_set"

// HandshakeLogName is the log_name of the listener-level tcp_grpc access log
// the control plane configures for handshake failures.
const HandshakeLogName = "mcc-handshake"

// Options configure a Service.
type Options struct {
	// Config is the loaded fusion set file. Required.
	Config *fusion.Config
	// Store holds scores and bans. nil means an in-process memory store;
	// pass a shared store (redis) so bans hold across gateways.
	Store threat.Store
	// StoreName is how /status names the store ("memory", or the Redis URL
	// with its password removed). Empty means "memory" without a Store,
	// "custom" with one.
	StoreName string
	// Pipeline receives events of sets whose threat_events is on. nil means
	// events are built (and logged per decision) but sent nowhere.
	Pipeline *threat.Pipeline
	// Logger gets startup, reload and (sampled) per-decision lines.
	Logger *zap.Logger
	// Clock is the engine's time source (tests move it).
	Clock fusion.Clock
	// Node names this instance in events (--node).
	Node string
	// TrustedProxies are the proxies in front of Envoy whose
	// X-Forwarded-For hops are believed (--trusted-proxies).
	TrustedProxies []netip.Prefix
	// SNIRoutes maps a TLS server name (exact, or "*.example.com") to the
	// fusion set whose listener serves it; used for handshake failures.
	SNIRoutes map[string]string
	// HandshakeFusionSet is the fusion set for handshake failures no other
	// rule routes (--handshake-fusion-set).
	HandshakeFusionSet string
	// Registry receives the service's metrics (and Go and process metrics,
	// unless it already has them). nil means a new registry.
	Registry *prometheus.Registry
	// CacheSize bounds the engine's verdict cache (engine default when 0).
	CacheSize int

	// MaxXFCCBytes caps x-forwarded-client-cert (DefaultMaxXFCCBytes when 0).
	MaxXFCCBytes int
	// XFCCAllowMultipleElements accepts an XFCC value with several elements
	// and reads the right-most (Envoy's own) one. Off: more than one element
	// is SPOOFED_CERT_HEADER, since mcc xds configures SANITIZE_SET, which
	// writes exactly one.
	XFCCAllowMultipleElements bool
	// MaxCertificateBytes caps the peer certificate and each XFCC chain
	// certificate (DefaultMaxCertificateBytes when 0).
	MaxCertificateBytes int
	// CertCacheBytes bounds the decoded-certificate cache
	// (DefaultCertCacheBytes when 0).
	CertCacheBytes int64
	// HandshakeFailureRate and HandshakeFailureBurst are each access-log
	// stream's token bucket for handshake failures (the defaults when 0).
	HandshakeFailureRate  float64
	HandshakeFailureBurst int
}

// limits are Options' limits with their defaults filled in.
type limits struct {
	maxXFCCBytes         int
	xfccMultipleElements bool
	maxCertificateBytes  int
	handshakeRate        float64
	handshakeBurst       int
}

func (o *Options) limits() (limits, error) {
	l := limits{
		maxXFCCBytes:         o.MaxXFCCBytes,
		xfccMultipleElements: o.XFCCAllowMultipleElements,
		maxCertificateBytes:  o.MaxCertificateBytes,
		handshakeRate:        o.HandshakeFailureRate,
		handshakeBurst:       o.HandshakeFailureBurst,
	}
	switch {
	case l.maxXFCCBytes < 0, l.maxCertificateBytes < 0, o.CertCacheBytes < 0, l.handshakeRate < 0, l.handshakeBurst < 0:
		return l, errors.New("envoyext: limits must not be negative")
	}
	if l.maxXFCCBytes == 0 {
		l.maxXFCCBytes = DefaultMaxXFCCBytes
	}
	if l.maxCertificateBytes == 0 {
		l.maxCertificateBytes = DefaultMaxCertificateBytes
	}
	if l.handshakeRate == 0 {
		l.handshakeRate = DefaultHandshakeFailureRate
	}
	if l.handshakeBurst == 0 {
		l.handshakeBurst = DefaultHandshakeFailureBurst
	}
	return l, nil
}

// Service is the ext_authz Authorization server and the AccessLogService.
// Register it on a gRPC server with Register.
type Service struct {
	engine   *fusion.Engine
	pipeline *threat.Pipeline
	log      *zap.Logger
	// decisionLog is log sampled per message, for lines written per request.
	decisionLog *zap.Logger
	node        string
	proxies     proxySet
	handshake   handshakeRouter
	registry    *prometheus.Registry
	metrics     *metrics
	limits      limits
	clock       func() time.Time
	storeName   string

	// status is what /status reports about reloads; see status.go.
	status configStatus
	// alsStreams counts open access-log streams.
	alsStreams atomic.Int64
	// handshakeDropped counts handshake failures over the per-stream rate.
	handshakeDropped atomic.Uint64

	// headers is the device-header index for the engine's current config.
	headers atomic.Pointer[headerIndex]
	// certs caches decoded peer certificates by a hash of their encoded
	// strings, within a byte budget.
	certs *certCache
	// gateway is the decoded gateway section for the current config.
	gateway atomic.Pointer[gatewayRoutes]
	ready   atomic.Bool
}

// New builds a Service and its engine.
func New(o Options) (*Service, error) {
	if o.Config == nil {
		return nil, errors.New("envoyext: Options.Config is required")
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	router, err := newHandshakeRouter(o.SNIRoutes, o.HandshakeFusionSet)
	if err != nil {
		return nil, err
	}
	lim, err := o.limits()
	if err != nil {
		return nil, err
	}
	clock := time.Now
	if o.Clock != nil {
		clock = o.Clock
	}
	engine, err := fusion.NewEngine(o.Config, fusion.Options{
		Store:     o.Store,
		Pipeline:  o.Pipeline,
		Clock:     o.Clock,
		Logger:    log,
		CacheSize: o.CacheSize,
		Gateway:   threat.GatewayEnvoy,
		Node:      o.Node,
	})
	if err != nil {
		return nil, fmt.Errorf("envoyext: starting fusion engine: %w", err)
	}
	s := &Service{
		engine:   engine,
		pipeline: o.Pipeline,
		log:      log,
		decisionLog: log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			// Per-request lines: the first 10 of each message per second,
			// then one in 100, so an attack cannot flood the log.
			return zapcore.NewSamplerWithOptions(c, time.Second, 10, 100)
		})),
		node:      o.Node,
		proxies:   proxySet(o.TrustedProxies),
		handshake: router,
		registry:  reg,
		limits:    lim,
		clock:     clock,
		certs:     newCertCache(o.CertCacheBytes),
		storeName: o.StoreName,
	}
	if s.storeName == "" && o.Store != nil {
		s.storeName = "custom"
	}
	s.status.loaded(o.Config, clock())
	s.metrics = newMetrics(reg, s)
	s.ready.Store(true)
	return s, nil
}

// Engine returns the fusion engine the service evaluates with.
func (s *Service) Engine() *fusion.Engine { return s.engine }

// Registry returns the registry holding the service's metrics.
func (s *Service) Registry() *prometheus.Registry { return s.registry }

// Register registers the Authorization and AccessLogService servers on r.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	authv3.RegisterAuthorizationServer(r, authzServer{s: s})
	accesslogv3.RegisterAccessLogServiceServer(r, accessLogServer{s: s})
}

// authzServer and accessLogServer adapt Service to the generated server
// interfaces; two small types keep the two Unimplemented embeddings apart.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	s *Service
}

type accessLogServer struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	s *Service
}

// headerIndex lists, per fusion set of one config, the device headers to
// copy from Envoy's lower-case headers map into the engine's http.Header.
type headerIndex struct {
	cfg  *fusion.Config
	sets map[string][]deviceHeader
}

type deviceHeader struct {
	lower     string // key in attributes.request.http.headers
	canonical string // key in fusion.Request.Header
}

// deviceHeaders returns the device headers of set id under the engine's
// current config, rebuilding the index after a reload.
func (s *Service) deviceHeaders(id string) []deviceHeader {
	cfg := s.engine.Config()
	idx := s.headers.Load()
	if idx == nil || idx.cfg != cfg {
		idx = buildHeaderIndex(cfg)
		s.headers.Store(idx)
	}
	return idx.sets[id]
}

func buildHeaderIndex(cfg *fusion.Config) *headerIndex {
	idx := &headerIndex{cfg: cfg, sets: make(map[string][]deviceHeader, len(cfg.Sets))}
	for id, set := range cfg.Sets {
		seen := map[string]bool{}
		var hs []deviceHeader
		for _, name := range set.DeviceHeaders {
			lower := strings.ToLower(name)
			if seen[lower] {
				continue
			}
			seen[lower] = true
			hs = append(hs, deviceHeader{lower: lower, canonical: http.CanonicalHeaderKey(name)})
		}
		idx.sets[id] = hs
	}
	return idx
}
