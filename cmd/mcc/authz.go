package main

import (
	"context"
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
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
	"github.com/mccgate/mcc/xds/gateway"
)

// Event file rotation for --events-file.
const (
	eventsFileMaxBytes = 100 << 20
	eventsFileKeep     = 5
)

// runAuthz runs the Envoy ext_authz service and the access-log receiver for
// handshake failures, with /healthz and /metrics on an admin port.
func runAuthz(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("authz", "authz --config FILE [flags]", stderr)
	configPath := fs.String("config", "", "fusion set `file` (required); reloaded when it or a file it references changes")
	listen := fs.String("listen", "", "gRPC `address` for ext_authz Check and the access-log service (default: the gateway section's authz address, else "+defaultAuthzListen+")")
	admin := fs.String("admin", "127.0.0.1:18082", "admin `address` for /healthz and /metrics (\"off\" disables)")
	eventsFile := fs.String("events-file", "", "also write threat events as JSON lines to this `file` (0600, rotated at 100 MiB, 5 kept)")
	trusted := fs.String("trusted-proxies", "", "comma-separated `CIDRs` of proxies in front of Envoy whose X-Forwarded-For is believed")
	node := fs.String("node", "", "`name` of this instance in events (default: the host name)")
	handshakeSet := fs.String("handshake-fusion-set", "", "fusion set `id` for handshake failures that no SNI route or custom tag assigns")
	metricsToken := fs.String("metrics-token-file", "", "`file` holding a bearer token that /metrics requires")
	watch := fs.Duration("watch-interval", 2*time.Second, "how often to check the fusion set file for changes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "mcc authz: --config is required")
		return errUsage
	}
	proxies, err := envoyext.ParseTrustedProxies(*trusted)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	token := ""
	if *metricsToken != "" {
		b, err := os.ReadFile(*metricsToken)
		if err != nil {
			return fmt.Errorf("--metrics-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("--metrics-token-file %s: file is empty", *metricsToken)
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
	log := newAuthzLogger(stderr)
	defer func() { _ = log.Sync() }()
	if *listen == "" {
		*listen = authzListenAddress(cfg, log)
	}

	// The fusion set file's store key: memory (per instance) or a Redis
	// URL shared by every gateway, so bans hold across Caddy and Envoy.
	store, err := storeurl.Open(ctx, cfg.File.Store, log.Named("store"))
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

	sinks := []threat.Sink{threat.NewLogSink(log.Named("events"))}
	if *eventsFile != "" {
		fileSink, err := threat.NewFileSink(*eventsFile, eventsFileMaxBytes, eventsFileKeep)
		if err != nil {
			return fmt.Errorf("--events-file: %w", err)
		}
		sinks = append(sinks, fileSink)
	}
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
		Config:             cfg,
		Store:              store,
		Pipeline:           pipeline,
		Logger:             log,
		Node:               *node,
		TrustedProxies:     proxies,
		HandshakeFusionSet: *handshakeSet,
	})
	if err != nil {
		return err
	}

	grpcLis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var adminLis net.Listener
	if *admin != "" && *admin != "off" {
		if adminLis, err = net.Listen("tcp", *admin); err != nil {
			grpcLis.Close()
			return fmt.Errorf("--admin: %w", err)
		}
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { svc.Watch(watchCtx, *watch); close(watchDone) }()
	err = svc.Serve(ctx, envoyext.ServeOptions{GRPC: grpcLis, Admin: adminLis, MetricsToken: token})
	stopWatch()
	<-watchDone
	return err
}

// defaultAuthzListen is where mcc authz listens when neither --listen nor
// the gateway section says otherwise.
const defaultAuthzListen = "127.0.0.1:18081"

// authzListenAddress is the gateway section's authz address (where mcc xds
// points Envoy's ext_authz and access-log clusters), else the default.
func authzListenAddress(cfg *fusion.Config, log *zap.Logger) string {
	if cfg.File.Gateway == nil {
		return defaultAuthzListen
	}
	gw, err := gateway.Decode(cfg.File.Gateway, gateway.Options{
		File:      cfg.Path,
		BaseDir:   filepath.Dir(cfg.Path),
		FusionSet: func(id string) bool { _, ok := cfg.Sets[id]; return ok },
	})
	if err != nil {
		log.Warn("gateway section unusable; listening on the default address", zap.String("listen", defaultAuthzListen), zap.Error(err))
		return defaultAuthzListen
	}
	if gw.Authz.Address.IP == "" {
		return defaultAuthzListen
	}
	return net.JoinHostPort(gw.Authz.Address.IP, strconv.FormatUint(uint64(gw.Authz.Address.Port), 10))
}

func newAuthzLogger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), zapcore.InfoLevel)
	return zap.New(core).Named("authz")
}
