// Package caddytesting is the TestMain shared by the packages that run an
// in-process Caddy through caddytest (caddymod, parity, fleet).
//
// caddytest skips every test silently under -short or -trimpath, or when it
// cannot find its bundled integration directory; CI must never mistake that
// for a pass, so Main fails instead. It also gives Caddy a temporary home, so
// tests never write to the real user's storage or autosave.
package caddytesting

import (
	"crypto/x509"
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

	"github.com/mccgate/mcc/internal/testpki"
)

// Main prepares the environment, runs the tests and returns the exit code:
// call it as os.Exit(caddytesting.Main(m, "parity")) from TestMain.
func Main(m *testing.M, name string) int {
	flag.Parse()
	if err := Prerequisites(); err != nil {
		fmt.Fprintf(os.Stderr, "%s tests: %v\n", name, err)
		return 1
	}
	home, err := os.MkdirTemp("", "mcc-"+name+"-home-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(home)
	for k, v := range map[string]string{
		"HOME":            home,
		"XDG_DATA_HOME":   filepath.Join(home, "data"),
		"XDG_CONFIG_HOME": filepath.Join(home, "config"),
		"XDG_CACHE_HOME":  filepath.Join(home, "cache"),
	} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintf(os.Stderr, "%s tests: %v\n", name, err)
			return 1
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
	return m.Run()
}

// Prerequisites reports why caddytest would skip every test here, or nil.
func Prerequisites() error {
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

// ServerTLS is a site's certificate and key files, issued for one host by a
// CA made for the test, and the pool that trusts that CA (for clients).
type ServerTLS struct {
	CertFile, KeyFile string
	Roots             *x509.CertPool
}

// NewServerTLS issues a server certificate for host into t.TempDir() with
// internal/testpki; the key file is 0600. The .pem extension keeps caddytest
// from rewriting the paths (it rewrites /<name>.crt and /<name>.key).
func NewServerTLS(t testing.TB, host string) ServerTLS {
	t.Helper()
	ca := testpki.NewCA(t, "mcc test server CA")
	certFile, keyFile, err := ca.Server(t, host).WriteFiles(t.TempDir(), "server")
	if err != nil {
		t.Fatal(err)
	}
	return ServerTLS{CertFile: certFile, KeyFile: keyFile, Roots: testpki.Pool(ca)}
}
