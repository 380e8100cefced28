package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/threat/storeurl"
)

var serverSubcommands = [][2]string{
	{"run", "run the API server (also: mcc server --data DIR)"},
	{"token create", "create an API token with scopes; prints it once"},
	{"token list", "list API tokens with their scopes and last use"},
	{"token revoke", "revoke an API token (by id or name)"},
	{"backup", "write a consistent snapshot of the database while it runs"},
	{"restore", "restore a backup into an empty data directory or database"},
	{"ca import", "make an `mcc ca init` directory the CA of a fusion set"},
	{"kek create", "create the key-encryption key file (for --database)"},
}

// defaultServerListen is loopback: off loopback needs TLS (internal/secure).
const defaultServerListen = "127.0.0.1:8700"

// runServer dispatches `mcc server <subcommand>`; flags without a
// subcommand run the server.
func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		subcommandUsage(stderr, "server", serverSubcommands)
		return errUsage
	}
	sub, rest := args[0], args[1:]
	switch {
	case isHelp(sub):
		subcommandUsage(stdout, "server", serverSubcommands)
		return nil
	case sub == "run":
		return runServerRun(ctx, rest, stdout, stderr)
	case len(sub) > 1 && sub[0] == '-':
		return runServerRun(ctx, args, stdout, stderr)
	case sub == "token" && len(rest) > 0 && !isHelp(rest[0]):
		switch rest[0] {
		case "create":
			return runServerTokenCreate(ctx, rest[1:], stdout, stderr)
		case "list":
			return runServerTokenList(ctx, rest[1:], stdout, stderr)
		case "revoke":
			return runServerTokenRevoke(ctx, rest[1:], stdout, stderr)
		}
	case sub == "backup":
		return runServerBackup(ctx, rest, stdout, stderr)
	case sub == "restore":
		return runServerRestore(ctx, rest, stdout, stderr)
	case sub == "ca" && len(rest) > 0 && rest[0] == "import":
		return runServerCAImport(ctx, rest[1:], stdout, stderr)
	case sub == "kek" && len(rest) > 0 && rest[0] == "create":
		return runServerKEKCreate(rest[1:], stdout, stderr)
	case sub == "token" || sub == "ca" || sub == "kek":
		if len(rest) > 0 && isHelp(rest[0]) {
			subcommandUsage(stdout, "server", serverSubcommands)
			return nil
		}
		fmt.Fprintf(stderr, "mcc server %s: want one of the subcommands below (see mcc server --help)\n", sub)
		return errUsage
	}
	fmt.Fprintf(stderr, "mcc server: unknown subcommand %q (see mcc server --help)\n", sub)
	return errUsage
}

// serverDBFlags find the database: every `mcc server` subcommand takes them.
type serverDBFlags struct {
	data, database, kekFile string
}

func (f *serverDBFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", "", "data `directory`: the SQLite database mcc.db and the key-encryption key kek.key (created 0700)")
	fs.StringVar(&f.database, "database", "", "PostgreSQL `URL` (postgres://...) instead of --data, for several instances")
	fs.StringVar(&f.kekFile, "kek-file", "", "key-encryption key `file` that seals CA keys (default DIR/kek.key; required with --database)")
}

// check requires exactly one of --data and --database.
func (f *serverDBFlags) check(fs *flag.FlagSet) error {
	if (f.data == "") == (f.database == "") {
		return usageError(fs, "give exactly one of --data DIR and --database URL")
	}
	return nil
}

// config is the server configuration the flags name.
func (f *serverDBFlags) config(log *zap.Logger) server.Config {
	return server.Config{DataDir: f.data, DatabaseURL: f.database, KEKFile: f.kekFile, Logger: log, Version: versionString()}
}

func runServerRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server run", "server run (--data DIR | --database URL --kek-file F) [--listen ADDR] [--tls-cert F --tls-key F] [flags]\n       mcc server --data DIR ... (the same)", stderr)
	var db serverDBFlags
	db.register(fs)
	listen := fs.String("listen", defaultServerListen, "`address` of the HTTP API (off loopback it needs --tls-cert and --tls-key)")
	var tlsFlags secure.ServerFlags
	fs.StringVar(&tlsFlags.CertFile, "tls-cert", "", "PEM `file` with the server certificate chain (HTTPS)")
	fs.StringVar(&tlsFlags.KeyFile, "tls-key", "", "PEM `file` with the server private key")
	fs.BoolVar(&tlsFlags.InsecurePlaintext, "insecure-plaintext", false, "allow plain HTTP off loopback, e.g. behind a TLS-terminating proxy (warned at every start)")
	enrollListen := fs.String("enroll-listen", "", "`address` of the enrollment listener: apps trade their build certificate for an install certificate over mTLS (needs --tls-cert and --tls-key)")
	rate := fs.Float64("rate-limit", server.DefaultRateLimit, "requests per second allowed per token (0: no limit)")
	burst := fs.Int("rate-burst", server.DefaultRateBurst, "requests a token may send at once above --rate-limit")
	banStore := fs.String("ban-store", "", "the gateways' shared store (redis:// or rediss:// URL; {env.NAME} and {file.PATH} placeholders keep the password off the command line): the console lists its fail-safe bans and an admin lifts them")
	eventRetention := fs.Duration("event-retention", 0, "how long raw threat events are kept, by their time (e.g. 720h; 0 keeps them); the console's per-minute counts are kept longer")
	enrollRate := fs.Float64("enroll-rate-limit", server.DefaultEnrollRateLimit, "requests per second allowed per client address (IPv4 /32, IPv6 /64) on the enrollment listener (0: no limit)")
	enrollBurst := fs.Int("enroll-rate-burst", server.DefaultEnrollRateBurst, "requests an address may send at once above --enroll-rate-limit")
	var xdsStatus stringsFlag
	fs.Var(&xdsStatus, "xds-status", "`URL` of an mcc xds admin port's /status (repeat for each instance): the console's gateways view shows each Envoy node's ACKed versions and last NACK; plain http only to loopback, where the admin token still reaches whatever holds the port while mcc xds is down: prefer https")
	xdsTokenFile := fs.String("xds-status-token-file", "", "`file` holding the admin token of mcc xds (its --admin-token-file)")
	xdsCA := fs.String("xds-status-ca", "", "PEM `file` of the CA that signed an https admin port's certificate (default: the system roots)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	if *rate < 0 || *burst < 1 {
		return usageError(fs, "--rate-limit must be ≥ 0 and --rate-burst ≥ 1")
	}
	if *enrollRate < 0 || *enrollBurst < 1 {
		return usageError(fs, "--enroll-rate-limit must be ≥ 0 and --enroll-rate-burst ≥ 1")
	}
	if err := tlsFlags.Check(); err != nil {
		return usageError(fs, "%v", err)
	}
	if *enrollListen != "" && tlsFlags.CertFile == "" {
		return usageError(fs, "--enroll-listen needs --tls-cert and --tls-key: apps present their certificate over TLS")
	}
	log := newJSONLogger(stderr, "server")
	if err := tlsFlags.CheckAdminListen("--listen", *listen, log); err != nil {
		return err
	}
	tlsConfig, err := tlsFlags.AdminTLS()
	if err != nil {
		return err
	}
	cfg := db.config(log)
	cfg.RateLimit, cfg.RateBurst = *rate, *burst
	if *eventRetention < 0 {
		return usageError(fs, "--event-retention must not be negative")
	}
	cfg.EventRetention = *eventRetention
	cfg.XDSStatus, cfg.XDSStatusTokenFile, cfg.XDSStatusCA = xdsStatus, *xdsTokenFile, *xdsCA
	if *banStore != "" {
		expanded, err := fusion.ExpandSecret(strings.TrimSpace(*banStore), ".")
		if err != nil {
			return usageError(fs, "--ban-store: %v", err)
		}
		_, kind, err := storeurl.ParseExpanded(expanded, *banStore)
		if err != nil {
			return usageError(fs, "--ban-store: %v", err)
		}
		if kind == storeurl.KindMemory {
			return usageError(fs, "--ban-store: a memory store lives inside one gateway process; give the redis:// store the gateways share")
		}
		cfg.BanStore = expanded
	}
	if *rate == 0 {
		cfg.RateLimit = -1 // Config's zero is the default; negative is off
	}
	cfg.EnrollRateLimit, cfg.EnrollRateBurst = *enrollRate, *enrollBurst
	if *enrollRate == 0 {
		cfg.EnrollRateLimit = -1
	}
	srv, err := server.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	var enrollLn net.Listener
	if *enrollListen != "" {
		if enrollLn, err = net.Listen("tcp", *enrollListen); err != nil {
			ln.Close()
			return fmt.Errorf("--enroll-listen: %w", err)
		}
	}
	return serveAPI(ctx, srv, ln, enrollLn, tlsConfig, log, stdout)
}

// serveAPI serves the API on ln until ctx is done, then shuts down
// gracefully: requests in flight finish (up to shutdownGrace).
// enrollLn, when not nil, serves the enrollment routes over mTLS.
func serveAPI(ctx context.Context, srv *server.Server, ln, enrollLn net.Listener, tlsConfig *tls.Config, log *zap.Logger, stdout io.Writer) error {
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		ln = tls.NewListener(ln, tlsConfig)
	}
	servers := []*http.Server{newHTTPServer(srv.Handler(), log)}
	listeners := []net.Listener{ln}
	bg, stopBG := context.WithCancel(ctx)
	bgDone := make(chan struct{})
	go func() { srv.Run(bg); close(bgDone) }()
	url := scheme + "://" + ln.Addr().String()
	log.Info("serving the API", zap.String("url", url), zap.String("database", string(srv.DB().Dialect())))
	fmt.Fprintf(stdout, "mcc server listening on %s\n", url)
	if enrollLn != nil {
		enrollLn = tls.NewListener(enrollLn, server.EnrollTLS(tlsConfig))
		servers = append(servers, newHTTPServer(srv.EnrollHandler(), log))
		listeners = append(listeners, enrollLn)
		enrollURL := "https://" + enrollLn.Addr().String()
		log.Info("serving enrollment", zap.String("url", enrollURL))
		fmt.Fprintf(stdout, "mcc server enrollment on %s\n", enrollURL)
	}

	serveErr := make(chan error, len(servers))
	for i, hs := range servers {
		go func() { serveErr <- hs.Serve(listeners[i]) }()
	}
	var err error
	select {
	case err = <-serveErr:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	for _, hs := range servers {
		if e := hs.Shutdown(shutdown); err == nil {
			err = e
		}
	}
	cancel()
	stopBG()
	<-bgDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// newHTTPServer is an http.Server with the timeouts every listener has.
func newHTTPServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
}

// shutdownGrace is how long requests in flight may take to finish.
const shutdownGrace = 10 * time.Second

// newJSONLogger logs JSON lines to w, at info level, named name.
func newJSONLogger(w io.Writer, name string) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), zapcore.InfoLevel)
	return zap.New(core).Named(name)
}
