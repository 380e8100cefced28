package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/serve"
)

// runXDS runs the Envoy control plane: ADS (state of the world and delta)
// on --listen, health, metrics and status on --admin, hot reload of the
// fusion set file and every file it references. With --tls-cert, --tls-key
// and --client-ca the ADS listener speaks mTLS, and each node group is
// served only to the client certificates its `peers` name.
func runXDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xds", "xds --config FILE [flags]", stderr)
	configPath := fs.String("config", "", "fusion set `file` with a gateway section (required); reloaded when it or a file it references changes")
	listen := fs.String("listen", "127.0.0.1:18000", "gRPC `address` of the xDS (ADS) server Envoy connects to")
	admin := fs.String("admin", "127.0.0.1:18001", "admin `address` for /healthz, /metrics and /status (\"off\" disables)")
	tokenFile := fs.String("admin-token-file", "", "`file` holding a bearer token that /metrics and /status require")
	watch := fs.Duration("watch-interval", xds.DefaultWatchInterval, "safety poll of the files (changes are seen at once through file notifications) and retry interval of a refused configuration")
	maxNodes := fs.Int("max-nodes", serve.DefaultMaxNodes, "most Envoy nodes tracked on /status (the longest-gone is forgotten first; new nodes are refused when all are connected)")
	maxStreams := fs.Int("max-streams", serve.DefaultMaxStreams, "most xDS streams open at once over all connections")
	var tlsFlags secure.ServerFlags
	tlsFlags.Register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" {
		fmt.Fprintln(stderr, "mcc xds: --config is required")
		return errUsage
	}
	if *watch <= 0 {
		fmt.Fprintln(stderr, "mcc xds: --watch-interval must be positive")
		return errUsage
	}
	if *maxNodes <= 0 || *maxStreams <= 0 {
		fmt.Fprintln(stderr, "mcc xds: --max-nodes and --max-streams must be positive")
		return errUsage
	}
	token := ""
	if *tokenFile != "" {
		var err error
		if token, err = secure.ReadSecretFile(*tokenFile); err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
	}

	log := newXDSLogger(stderr)
	defer func() { _ = log.Sync() }()
	// The listener rule: off loopback, mTLS with Envoy's client
	// certificates (or an explicit, warned --insecure-plaintext); the
	// admin port off loopback needs TLS.
	adminOn := *admin != "" && *admin != "off"
	creds, adminTLS, err := tlsFlags.Prepare(log, secure.Addr{Flag: "--admin", Address: *admin},
		secure.Addr{Flag: "--listen", Address: *listen})
	if err != nil {
		return err
	}
	srv, err := xds.NewServer(ctx, xds.Options{
		ConfigPath:         *configPath,
		WatchInterval:      *watch,
		AdminToken:         token,
		Logger:             log,
		Creds:              creds,
		ClientCertificates: tlsFlags.ClientCAFile != "",
		AdminTLS:           adminTLS,
		MaxNodes:           *maxNodes,
		MaxStreams:         *maxStreams,
	})
	if err != nil {
		return err // every problem already names the file, line and field
	}
	xdsLis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var adminLis net.Listener
	if adminOn {
		if adminLis, err = net.Listen("tcp", *admin); err != nil {
			xdsLis.Close()
			return fmt.Errorf("--admin: %w", err)
		}
	}
	return srv.Serve(ctx, xdsLis, adminLis)
}

func newXDSLogger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), zapcore.InfoLevel)
	return zap.New(core).Named("xds")
}
