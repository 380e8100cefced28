package fleet

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// Ports of this package's in-process Caddy. Other packages that run
// caddytest use other admin ports (2999, 2998, 2997) and other listener
// ports, so `go test ./...` can run them side by side.
const (
	adminPort = 2996
	httpPort  = 29380
	httpsPort = 29743
)

// TestMain refuses to run where caddytest would silently skip every test
// (-short, -trimpath, no integration directory) and gives Caddy a temporary
// home for its storage and autosave.
func TestMain(m *testing.M) {
	flag.Parse()
	if err := prerequisites(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet tests:", err)
		os.Exit(1)
	}
	home, err := os.MkdirTemp("", "mcc-fleet-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet tests:", err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME":            home,
		"XDG_DATA_HOME":   filepath.Join(home, "data"),
		"XDG_CONFIG_HOME": filepath.Join(home, "config"),
		"XDG_CACHE_HOME":  filepath.Join(home, "cache"),
	} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, "fleet tests:", err)
			os.Exit(1)
		}
	}
	// caddytest talks to the admin API through http.DefaultTransport, and
	// every config load replaces the admin listener: a pooled connection to
	// the previous listener could be reset under the next request.
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.DisableKeepAlives = true
	}
	// Caddy computed these from the environment at init, before TestMain.
	caddy.ConfigAutosavePath = filepath.Join(home, "config", "caddy", "autosave.json")
	caddy.DefaultStorage.Path = filepath.Join(home, "data", "caddy")
	code := m.Run()
	_ = os.RemoveAll(home)
	os.Exit(code)
}

// prerequisites fails (never skips) where caddytest would skip.
func prerequisites() error {
	if testing.Short() {
		return fmt.Errorf("-short would make caddytest skip every test; run without -short")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-trimpath" && s.Value == "true" {
				return fmt.Errorf("built with -trimpath: caddytest cannot find its integration directory and would skip every test; unset -trimpath (GOFLAGS)")
			}
		}
	}
	// caddytest finds its bundled certificates next to its own source.
	fn := runtime.FuncForPC(reflect.ValueOf(caddytest.NewTester).Pointer())
	if fn == nil {
		return fmt.Errorf("cannot locate caddytest")
	}
	file, _ := fn.FileLine(fn.Entry())
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "caddy.localhost.crt")); err != nil {
		return fmt.Errorf("caddytest integration directory %s is missing (%v): caddytest would skip every test", dir, err)
	}
	return nil
}
