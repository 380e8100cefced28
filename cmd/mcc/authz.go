package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
	"github.com/mccgate/mcc/xds/gateway"
)

// runAuthz runs the Envoy ext_authz service and the access-log receiver for
// handshake failures, with /healthz, /metrics and /status on an admin port.
func runAuthz(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("authz", "authz --config FILE [flags]", stderr)
	configPath := fs.String("config", "", "fusion set `file` (required); reloaded when it or a file it references changes")
	listen := fs.String("listen", "", "gRPC `address` for ext_authz Check, and for the access-log service unless --access-log-listen (default: the gateway section's authz address, else "+defaultAuthzListen+")")
	alsListen := fs.String("access-log-listen", "", "gRPC `address` that alone serves the access-log service (handshake failures); same TLS flags as --listen")
	admin := fs.String("admin", "127.0.0.1:18082", "admin `address` for /healthz, /metrics and /status (\"off\" disables)")
	eventsFile := fs.String("events-file", "", "also write threat events as JSON lines to this `file` (0600, rotated at 100 MiB, 5 kept)")
	trusted := fs.String("trusted-proxies", "", "comma-separated `CIDRs` of proxies in front of Envoy whose X-Forwarded-For is believed")
	node := fs.String("node", "", "`name` of this instance in events (default: the host name)")
	handshakeSet := fs.String("handshake-fusion-set", "", "fusion set `id` for handshake failures that no SNI route or custom tag assigns")
	tokenFile := fs.String("admin-token-file", "", "`file` holding a bearer token that /metrics and /status require")
	metricsToken := fs.String("metrics-token-file", "", "deprecated name of --admin-token-file (same `file`; logs a warning)")
	var peers, alsPeers stringsFlag
	fs.Var(&peers, "peer", "client-certificate `identity` (URI SAN, DNS SAN or CN) allowed to call Check; repeatable; needs --client-ca (default: any certificate --client-ca signed)")
	fs.Var(&alsPeers, "access-log-peer", "client-certificate `identity` allowed to stream access logs (handshake failures); repeatable (default: the --peer list)")
	multiXFCC := fs.Bool("xfcc-allow-multiple-elements", false, "accept an x-forwarded-client-cert with several elements and read the right-most (default: refuse as SPOOFED_CERT_HEADER)")
	hsRate := fs.Float64("handshake-failure-rate", envoyext.DefaultHandshakeFailureRate, "`n` handshake failures scored per second on each access-log stream after the burst; the rest are counted and dropped")
	hsBurst := fs.Int("handshake-failure-burst", envoyext.DefaultHandshakeFailureBurst, "`n` handshake failures an access-log stream may report at once before --handshake-failure-rate applies")
	var tlsFlags secure.ServerFlags
	tlsFlags.Register(fs)
	watch := fs.Duration("watch-interval", 2*time.Second, "safety poll of the fusion set file and the files it references (changes are seen at once through file notifications)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "mcc authz: --config is required")
		return errUsage
	}
	if *hsRate <= 0 || *hsBurst <= 0 {
		fmt.Fprintln(stderr, "mcc authz: --handshake-failure-rate and --handshake-failure-burst must be positive")
		return errUsage
	}
	if err := tlsFlags.Check(); err != nil {
		return err
	}
	if (len(peers) > 0 || len(alsPeers) > 0) && tlsFlags.ClientCAFile == "" {
		return errors.New("--peer and --access-log-peer name client-certificate identities: they need --tls-cert, --tls-key and --client-ca")
	}
	if len(alsPeers) == 0 {
		alsPeers = peers
	}
	proxies, err := envoyext.ParseTrustedProxies(*trusted)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	log := newAuthzLogger(stderr)
	defer func() { _ = log.Sync() }()

	token := ""
	switch {
	case *tokenFile != "" && *metricsToken != "":
		return errors.New("--metrics-token-file is the old name of --admin-token-file: pass only --admin-token-file")
	case *metricsToken != "":
		log.Warn("--metrics-token-file is deprecated; use --admin-token-file (it also protects /status)")
		*tokenFile = *metricsToken
	}
	if *tokenFile != "" {
		if token, err = secure.ReadSecretFile(*tokenFile); err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
	}
	if *node == "" {
		*node, _ = os.Hostname()
	}

	cfg, err := fusion.LoadFile(*configPath)
	if err != nil {
		return fmt.Errorf("loading fusion set file: %w", err)
	}
	if *handshakeSet != "" {
		if _, ok := cfg.Sets[*handshakeSet]; !ok {
			return fmt.Errorf("--handshake-fusion-set %q: no such fusion set in %s", *handshakeSet, *configPath)
		}
	}
	// The gateway section is where mcc xds points Envoy: mcc authz listens
	// there by default, and warns when its flags say otherwise, since then
	// Envoy cannot reach it (every request denied) unless something
	// forwards between the two.
	gw := gatewayAuthz(cfg, log)
	*listen = reconcileListen(log, "--listen", *listen, "authz.address", gw.address, defaultAuthzListen, *configPath)
	*alsListen = reconcileListen(log, "--access-log-listen", *alsListen, "authz.access_log_address", gw.accessLogAddress, "", *configPath)
	switch {
	case gw.tls && !tlsFlags.TLS():
		log.Warn("the gateway section's authz.tls makes Envoy call mcc authz over mTLS, but --tls-cert, --tls-key and --client-ca are not set: Envoy's calls will fail",
			zap.String("config", *configPath))
	case gw.present && !gw.tls && tlsFlags.TLS():
		log.Warn("mcc authz serves TLS, but the gateway section has no authz.tls: Envoy will call it in plaintext and fail",
			zap.String("config", *configPath))
	}
	adminOn := *admin != "" && *admin != "off"
	creds, adminTLS, err := tlsFlags.Prepare(log, secure.Addr{Flag: "--admin", Address: *admin},
		secure.Addr{Flag: "--listen", Address: *listen}, secure.Addr{Flag: "--access-log-listen", Address: *alsListen})
	if err != nil {
		return err
	}

	// The fusion set file's store key: memory (per instance) or a Redis
	// URL shared by every gateway, so bans hold across Caddy and Envoy.
	// cfg.File.Store keeps the placeholder text for logs and /status;
	// StoreURL is the expanded secret, handed to the store only.
	store, err := storeurl.Open(ctx, cfg.StoreURL(), log.Named("store"))
	if err != nil {
		return fmt.Errorf("%s: %w", *configPath, err)
	}
	defer store.Close()
	storeName := cfg.File.Store
	if storeName == "" {
		storeName = storeurl.Memory
	}
	// A changed store key takes a restart: scores and bans live in it.
	log.Info("score and ban store", zap.String("store", storeurl.Redact(storeName)))

	// The fusion file's sinks section, the same keys as Caddy's sink
	// option (default: the log); --events-file adds a file. Like the
	// store, a changed section takes a restart.
	sinks, err := cfg.OpenSinks(ctx, log)
	if err != nil {
		return fmt.Errorf("%s: %w", *configPath, err)
	}
	if len(sinks) == 0 {
		sinks = []threat.Sink{threat.NewLogSink(log.Named("events"))}
	}
	if *eventsFile != "" {
		fileSink, err := threat.NewFileSink(*eventsFile, fusion.DefaultFileSinkMaxSize, fusion.DefaultFileSinkKeep)
		if err != nil {
			for _, s := range sinks {
				_ = s.Close()
			}
			return fmt.Errorf("--events-file: %w", err)
		}
		sinks = append(sinks, fileSink)
	}
	names := make([]string, len(sinks))
	for i, s := range sinks {
		names[i] = s.Name() // never a secret: a host, a stream, a path
	}
	log.Info("event sinks", zap.Strings("sinks", names))
	pipeline := threat.NewPipeline(threat.PipelineOptions{Sinks: sinks, Logger: log.Named("pipeline")})
	defer func() {
		// Give the sinks a moment to write what is queued.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := pipeline.Close(cctx); err != nil {
			log.Warn("closing event pipeline", zap.Error(err))
		}
	}()

	svc, err := envoyext.New(envoyext.Options{
		Config:                    cfg,
		Store:                     store,
		StoreName:                 storeurl.Redact(storeName),
		Pipeline:                  pipeline,
		Logger:                    log,
		Node:                      *node,
		TrustedProxies:            proxies,
		HandshakeFusionSet:        *handshakeSet,
		XFCCAllowMultipleElements: *multiXFCC,
		HandshakeFailureRate:      *hsRate,
		HandshakeFailureBurst:     *hsBurst,
	})
	if err != nil {
		return err
	}

	grpcLis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var alsLis, adminLis net.Listener
	if *alsListen != "" {
		if alsLis, err = net.Listen("tcp", *alsListen); err != nil {
			grpcLis.Close()
			return fmt.Errorf("--access-log-listen: %w", err)
		}
	}
	if adminOn {
		if adminLis, err = net.Listen("tcp", *admin); err != nil {
			grpcLis.Close()
			if alsLis != nil {
				alsLis.Close()
			}
			return fmt.Errorf("--admin: %w", err)
		}
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { svc.Watch(watchCtx, *watch); close(watchDone) }()
	err = svc.Serve(ctx, envoyext.ServeOptions{
		GRPC:           grpcLis,
		AccessLog:      alsLis,
		Creds:          creds,
		CheckPeers:     peers,
		AccessLogPeers: alsPeers,
		Admin:          adminLis,
		AdminTLS:       adminTLS,
		AdminToken:     token,
	})
	stopWatch()
	<-watchDone
	return err
}

// stringsFlag is a repeatable string flag (--peer a --peer b).
type stringsFlag []string

func (l *stringsFlag) String() string { return strings.Join(*l, ",") }
func (l *stringsFlag) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

// sameListenAddress reports whether listening on listen serves clients that
// dial target: the same port, and the same host unless listen binds every
// address.
func sameListenAddress(listen, target string) bool {
	lh, lp, err1 := net.SplitHostPort(listen)
	th, tp, err2 := net.SplitHostPort(target)
	if err1 != nil || err2 != nil {
		return listen == target
	}
	if lp != tp {
		return false
	}
	if lh == "" || lh == "0.0.0.0" || lh == "::" || lh == th {
		return true
	}
	a, b := net.ParseIP(lh), net.ParseIP(th)
	return a != nil && b != nil && a.Equal(b)
}

// defaultAuthzListen is where mcc authz listens when neither --listen nor
// the gateway section says otherwise.
const defaultAuthzListen = "127.0.0.1:18081"

// gatewayAuthzInfo is what the gateway section tells Envoy about mcc authz.
type gatewayAuthzInfo struct {
	present          bool   // a usable gateway section
	address          string // authz.address ("" without a gateway section)
	accessLogAddress string // authz.access_log_address ("" when unset)
	tls              bool   // authz.tls: Envoy calls over mTLS
}

// gatewayAuthz reads the gateway section's authz block (where mcc xds points
// Envoy's ext_authz and access-log clusters).
func gatewayAuthz(cfg *fusion.Config, log *zap.Logger) gatewayAuthzInfo {
	if cfg.File.Gateway == nil {
		return gatewayAuthzInfo{}
	}
	gw, err := gateway.Decode(cfg.File.Gateway, gateway.Options{
		File:      cfg.Path,
		BaseDir:   filepath.Dir(cfg.Path),
		FusionSet: func(id string) bool { _, ok := cfg.Sets[id]; return ok },
	})
	if err != nil {
		log.Warn("gateway section unusable; its authz addresses are not used", zap.Error(err))
		return gatewayAuthzInfo{}
	}
	return gatewayAuthzInfo{
		present:          true,
		address:          endpointAddress(gw.Authz.Address),
		accessLogAddress: endpointAddress(gw.Authz.AccessLogAddress),
		tls:              gw.Authz.TLS != nil,
	}
}

func endpointAddress(e gateway.Endpoint) string {
	if e.IP == "" {
		return ""
	}
	return net.JoinHostPort(e.IP, strconv.FormatUint(uint64(e.Port), 10))
}

// reconcileListen returns the address to listen on for flag: the flag's
// value, else the gateway section's, else def. When both are given and
// differ, it logs a warning naming both.
func reconcileListen(log *zap.Logger, flag, value, key, fromGateway, def, configPath string) string {
	switch {
	case value == "" && fromGateway != "":
		return fromGateway
	case value == "":
		return def
	case fromGateway != "" && !sameListenAddress(value, fromGateway):
		log.Warn(flag+" differs from the gateway section's "+key+", where mcc xds points Envoy; Envoy will not reach this listener unless something forwards to it",
			zap.String("flag", flag), zap.String("listen", value), zap.String("gateway_address", fromGateway), zap.String("config", configPath))
	}
	return value
}

// authzListenAddress is the gateway section's authz address, else the
// default.
func authzListenAddress(cfg *fusion.Config, log *zap.Logger) string {
	if a := gatewayAuthz(cfg, log).address; a != "" {
		return a
	}
	return defaultAuthzListen
}

func newAuthzLogger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), zapcore.InfoLevel)
	return zap.New(core).Named("authz")
}
