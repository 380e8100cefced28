package parity

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// adminPort is this package's in-process Caddy admin port: other packages
// running caddytest use other ports, so `go test ./...` can run them side by
// side.
const adminPort = 2997

// TestMain refuses to run where caddytest would skip every test silently
// (-short, -trimpath) and gives Caddy a temporary home for its storage and
// autosave.
func TestMain(m *testing.M) {
	flag.Parse()
	if err := prerequisites(); err != nil {
		fmt.Fprintln(os.Stderr, "parity tests:", err)
		os.Exit(1)
	}
	home, err := os.MkdirTemp("", "mcc-parity-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "parity tests:", err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME":            home,
		"XDG_DATA_HOME":   filepath.Join(home, "data"),
		"XDG_CONFIG_HOME": filepath.Join(home, "config"),
		"XDG_CACHE_HOME":  filepath.Join(home, "cache"),
	} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, "parity tests:", err)
			os.Exit(1)
		}
	}
	// Caddy computed these from the environment at init, before TestMain.
	caddy.ConfigAutosavePath = filepath.Join(home, "config", "caddy", "autosave.json")
	caddy.DefaultStorage.Path = filepath.Join(home, "data", "caddy")
	code := m.Run()
	_ = os.RemoveAll(home)
	os.Exit(code)
}

func prerequisites() error {
	if testing.Short() {
		return fmt.Errorf("-short would make caddytest skip; run without -short")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-trimpath" && s.Value == "true" {
				return fmt.Errorf("built with -trimpath: caddytest would skip every test; unset -trimpath (GOFLAGS)")
			}
		}
	}
	fn := runtime.FuncForPC(reflect.ValueOf(caddytest.NewTester).Pointer())
	if fn == nil {
		return fmt.Errorf("cannot locate caddytest")
	}
	file, _ := fn.FileLine(fn.Entry())
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "caddy.localhost.crt")); err != nil {
		return fmt.Errorf("caddytest integration directory missing (%v): caddytest would skip every test", err)
	}
	return nil
}
