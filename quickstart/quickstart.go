// Package quickstart runs `mcc quickstart`: a Caddy gateway on localhost,
// protected by a demo fusion set, with a demo PKI and a built-in echo
// upstream, and prints the curl lines that show what it does.
//
// Everything it writes goes into one directory (./.mcc-quickstart by
// default). The demo CAs and certificates are created once and kept between
// runs (a demo app certificate revoked since the last run is replaced); the
// fusion set file and the Caddyfile are rewritten on every start. It refuses
// a port another process serves, and keeps Caddy's log in caddy.log, so the
// terminal shows only its own lines.
package quickstart

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

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	// The standard modules and the Caddyfile adapter, as in cmd/caddy.
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// mcc's Caddy modules.
	_ "github.com/mccgate/mcc/caddymod"

	"github.com/mccgate/mcc/pki"
)

// Defaults for the command-line flags.
const (
	DefaultDir    = ".mcc-quickstart"
	DefaultListen = "127.0.0.1:8443"
	DefaultMode   = "defense"
)

// The demo fusion set and app.
const (
	SetID = "quickstart"
	AppID = "demo-app"
)

// Files the quickstart writes besides the demo PKI.
const (
	FusionSetFile = "fusion-sets.yaml"
	CaddyfileFile = "Caddyfile"
	EventsFile    = "events.jsonl"
	CaddyLogFile  = "caddy.log"
	storageDir    = "caddy-data"
)

// stopTimeout bounds the upstream's shutdown; Caddy's own grace period is
// set in the Caddyfile.
const stopTimeout = 5 * time.Second

// Options configure Run.
type Options struct {
	// Dir holds the demo PKI and the generated files (DefaultDir when empty).
	Dir string
	// Listen is the gateway's host:port (DefaultListen when empty). The
	// URL to try is https://localhost:<port>/.
	Listen string
	// Mode is the fusion set's mode, "defense" or "detection".
	Mode string
	// Out receives the instructions.
	Out io.Writer
	// Mcc is how the printed mcc lines start mcc, as shell words ("mcc"
	// when empty). cmd/mcc sets it from how it was started, so the lines
	// work for a `go run` user too.
	Mcc string
	// MccAbsPaths makes the file arguments of the printed mcc lines
	// absolute, for an Mcc command that runs in another directory (such
	// as go -C DIR run ./cmd/mcc).
	MccAbsPaths bool
}

// Run starts the gateway, prints how to try it and serves until ctx is
// done, then stops Caddy and the upstream. Caddy is a process-wide
// singleton: Run must not be called twice at the same time in one process.
func Run(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	host, port, err := splitListen(o.Listen)
	if err != nil {
		return err
	}

	if err := checkPortFree(host, port); err != nil {
		return err
	}
	g, err := prepare(o, host, port)
	if err != nil {
		return err
	}

	upstream, err := startEcho()
	if err != nil {
		return err
	}
	g.cfg.Upstream = upstream.addr

	if err := start(g); err != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		return errors.Join(err, upstream.shutdown(shutdownCtx))
	}
	enroll, err := startEnrollment(ctx, g)
	if err != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		return errors.Join(err, caddy.Stop(), upstream.shutdown(shutdownCtx))
	}
	g.enrollPort = enroll.port

	printInstructions(o.Out, g)

	<-ctx.Done()
	fmt.Fprintln(o.Out, "\nstopping...")
	err = caddy.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if eerr := enroll.stop(shutdownCtx); eerr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the demo mcc server: %w", eerr))
	}
	if uerr := upstream.shutdown(shutdownCtx); uerr != nil {
		err = errors.Join(err, fmt.Errorf("stopping the echo upstream: %w", uerr))
	}
	if err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	fmt.Fprintln(o.Out, "stopped.")
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Mode == "" {
		o.Mode = DefaultMode
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Mcc == "" {
		o.Mcc = "mcc"
	}
	if o.Mode != "defense" && o.Mode != "detection" {
		return o, fmt.Errorf("--mode: want defense or detection, got %q", o.Mode)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, fmt.Errorf("--dir %q: %w", o.Dir, err)
	}
	// Braces would read as placeholders in the Caddyfile.
	if strings.ContainsAny(dir, "{}\n\r") {
		return o, fmt.Errorf("--dir %q: the path may not contain braces or line breaks", dir)
	}
	o.Dir = dir
	return o, nil
}

// splitListen checks host:port. The port must be a fixed one (the URL to
// try is printed), and an empty host means every interface.
func splitListen(listen string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("--listen %q: want host:port: %w", listen, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("--listen %q: want a port from 1 to 65535", listen)
	}
	return host, port, nil
}

// checkPortFree refuses a port that another process already serves. Caddy
// binds with SO_REUSEPORT on Linux, so without this check a quickstart
// started next to another server on the same port (one that sets
// SO_REUSEPORT too, such as another Caddy) would start without a word and
// the kernel would split the connections between the two. A plain bind,
// without SO_REUSEPORT, fails while anyone listens on the port.
func checkPortFree(host, port string) error {
	addr := net.JoinHostPort(host, port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--listen %s: the port is already in use by another process; stop it or pick another port with --listen: %w", addr, err)
	}
	if err := ln.Close(); err != nil {
		return fmt.Errorf("--listen %s: closing the probe listener: %w", addr, err)
	}
	return nil
}

// gateway is one quickstart run: its options, the demo PKI and the
// generated configuration.
type gateway struct {
	opts  Options
	demo  *pki.Demo
	state demoState
	cfg   gatewayConfig
	// enrollPort is the demo mcc server's enrollment listener.
	enrollPort string
}

// prepare creates (or reuses) the demo PKI and the server certificate.
func prepare(o Options, host, port string) (*gateway, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", o.Dir, err)
	}
	demo, state, err := ensureDemo(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := ensureServerCert(o.Dir, time.Now()); err != nil {
		return nil, fmt.Errorf("demo server certificate: %w", err)
	}
	return &gateway{
		opts:  o,
		demo:  demo,
		state: state,
		cfg: gatewayConfig{
			Mode:       o.Mode,
			BindHost:   host,
			Port:       port,
			FusionFile: filepath.Join(o.Dir, FusionSetFile),
			SetID:      SetID,
			AppID:      AppID,
			ClientCA:   demo.CACert,
			Revoked:    filepath.Join(demo.CADir, pki.RevokedFile),
			ServerCert: filepath.Join(o.Dir, ServerCertFile),
			ServerKey:  filepath.Join(o.Dir, ServerKeyFile),
			EventsFile: filepath.Join(o.Dir, EventsFile),
			CaddyLog:   filepath.Join(o.Dir, CaddyLogFile),
			Storage:    filepath.Join(o.Dir, storageDir),
		},
	}, nil
}

// start writes the fusion set file and the Caddyfile, adapts the Caddyfile
// and loads the result into Caddy.
func start(g *gateway) error {
	if err := writeFile(g.cfg.FusionFile, []byte(fusionSetYAML(g.cfg)), 0o644); err != nil {
		return err
	}
	cf := caddyfile(g.cfg)
	cfPath := filepath.Join(g.opts.Dir, CaddyfileFile)
	if err := writeFile(cfPath, []byte(cf), 0o644); err != nil {
		return err
	}
	cfgJSON, err := adaptCaddyfile([]byte(cf), cfPath)
	if err != nil {
		return err
	}
	// Caddy logs to stderr until the config's own log takes over, and it
	// announces that switch there ("redirected default logger"). Buffer
	// the early lines so they go to caddy.log with the rest, keeping the
	// terminal for the instructions. On a failed start they are written to
	// stderr after all, next to the error.
	_, earlyLogger, _ := caddy.BufferedLog()
	err = caddy.Load(cfgJSON, true)
	caddy.UnbufferDefaultLogger(earlyLogger)
	if err != nil {
		return fmt.Errorf("starting Caddy with %s: %w", cfPath, err)
	}
	return nil
}

// adaptCaddyfile turns a Caddyfile into Caddy's JSON config, as
// `caddy adapt` does. Warnings are errors: the Caddyfile is ours.
func adaptCaddyfile(body []byte, filename string) ([]byte, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		return nil, errors.New("the caddyfile config adapter is not registered")
	}
	cfgJSON, warnings, err := adapter.Adapt(body, map[string]any{"filename": filename})
	if err != nil {
		return nil, fmt.Errorf("adapting %s: %w", filename, err)
	}
	for _, w := range warnings {
		return nil, fmt.Errorf("adapting %s: %s", filename, w.String())
	}
	return cfgJSON, nil
}
