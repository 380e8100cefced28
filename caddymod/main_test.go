package caddymod

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

// adminPort is this package's in-process Caddy admin port. Other packages
// that run caddytest use other ports, so `go test ./...` can run them side
// by side.
const adminPort = 2999

// TestMain refuses to run in the ways caddytest would silently skip every
// test (-short, -trimpath), and points Caddy's storage and autosave at a
// temporary home so tests never touch the user's.
func TestMain(m *testing.M) {
	flag.Parse()
	if err := checkIntegrationPrerequisites(); err != nil {
		fmt.Fprintln(os.Stderr, "caddymod tests:", err)
		os.Exit(1)
	}
	home, err := os.MkdirTemp("", "caddymod-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "caddymod tests:", err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME":            home,
		"XDG_DATA_HOME":   filepath.Join(home, "data"),
		"XDG_CONFIG_HOME": filepath.Join(home, "config"),
		"XDG_CACHE_HOME":  filepath.Join(home, "cache"),
	} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, "caddymod tests:", err)
			os.Exit(1)
		}
	}
	// caddytest talks to the admin API through http.DefaultTransport. Every
	// config load replaces the admin listener, so a pooled connection to
	// the previous one can be reset under the next request: no pooling.
	if tr, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.DisableKeepAlives = true
	}
	// Caddy computes these from the environment at init, before TestMain.
	caddy.ConfigAutosavePath = filepath.Join(home, "config", "caddy", "autosave.json")
	caddy.DefaultStorage.Path = filepath.Join(home, "data", "caddy")
	code := m.Run()
	_ = os.RemoveAll(home)
	os.Exit(code)
}

func checkIntegrationPrerequisites() error {
	if testing.Short() {
		return fmt.Errorf("-short would make every caddytest test skip silently; run without -short")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-trimpath" && s.Value == "true" {
				return fmt.Errorf("built with -trimpath: caddytest cannot find its integration directory and would skip every test; unset -trimpath (GOFLAGS)")
			}
		}
	}
	// caddytest locates its bundled certificates from its own source path.
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
