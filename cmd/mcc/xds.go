package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/xds"
)

// runXDS runs the Envoy control plane: ADS (state of the world and delta)
// on --listen, health, metrics and status on --admin, hot reload of the
// fusion set file and every file it references.
func runXDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("xds", "xds --config FILE [flags]", stderr)
	configPath := fs.String("config", "", "fusion set `file` with a gateway section (required); reloaded when it or a file it references changes")
	listen := fs.String("listen", "127.0.0.1:18000", "gRPC `address` of the xDS (ADS) server Envoy connects to")
	admin := fs.String("admin", "127.0.0.1:18001", "admin `address` for /healthz, /metrics and /status (\"off\" disables)")
	tokenFile := fs.String("admin-token-file", "", "`file` holding a bearer token that /metrics and /status require")
	watch := fs.Duration("watch-interval", xds.DefaultWatchInterval, "how often to check the files for changes")
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
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("--admin-token-file %s: file is empty", *tokenFile)
		}
	}

	log := newXDSLogger(stderr)
	defer func() { _ = log.Sync() }()
	srv, err := xds.NewServer(ctx, xds.Options{
		ConfigPath:    *configPath,
		WatchInterval: *watch,
		AdminToken:    token,
		Logger:        log,
	})
	if err != nil {
		return err // every problem already names the file, line and field
	}
	xdsLis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var adminLis net.Listener
	if *admin != "" && *admin != "off" {
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
