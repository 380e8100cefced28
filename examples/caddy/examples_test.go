// Package caddyexamples holds only the tests of the example Caddyfiles in
// this directory.
package caddyexamples

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mccgate/mcc/caddymod"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/threat"
)

// examples maps each example Caddyfile to the mode and events setting of
// the fusion sets it enforces: the file name promises them.
var examples = map[string]struct {
	mode   threat.Mode
	events bool
}{
	"defense.Caddyfile":        {threat.ModeDefense, false},
	"detection.Caddyfile":      {threat.ModeDetection, true},
	"defense-events.Caddyfile": {threat.ModeDefense, true},
}

// TestExamplesAdapt adapts every example Caddyfile as `caddy adapt` does,
// refusing warnings (an unformatted file warns), and checks that each uses
// the mcc app with this directory's fusion set file.
func TestExamplesAdapt(t *testing.T) {
	files, err := filepath.Glob("*.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range examples {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(files, names) {
		t.Fatalf("example Caddyfiles are %v, want %v (update the table in this test)", files, names)
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			cfg := adapt(t, name)
			mcc, ok := cfg["apps"].(map[string]any)["mcc"].(map[string]any)
			if !ok {
				t.Fatalf("no mcc app in the adapted config")
			}
			if got := mcc["fusion_sets_file"]; got != "fusion-sets.yaml" {
				t.Errorf("mcc app fusion_sets_file = %v, want fusion-sets.yaml", got)
			}
			if handlers, _ := fusionSetRefs(cfg); len(handlers) == 0 {
				t.Errorf("no fusion_set handler in the adapted config")
			}
		})
	}
}

// TestExamplesProvision goes one step further than `caddy adapt`: with a CA
// made by package pki and a server certificate in place, as the README
// says, every example is provisioned and validated by Caddy (fusion set
// file loaded, sets found, certificates read) without binding ports, and
// the sets it uses have the mode its name promises.
func TestExamplesProvision(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))

	work := t.TempDir()
	files, err := filepath.Glob("*.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append(files, "fusion-sets.yaml") {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pki.InitCA(filepath.Join(work, "ca"), pki.CAOptions{}); err != nil {
		t.Fatalf("mcc ca init --dir ca: %v", err)
	}
	writeServerCert(t, filepath.Join(work, "server.pem"), filepath.Join(work, "server-key.pem"))

	sets, err := fusion.LoadFile(filepath.Join(work, "fusion-sets.yaml"))
	if err != nil {
		t.Fatalf("loading fusion-sets.yaml: %v", err)
	}

	t.Chdir(work) // the examples use paths relative to their directory
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			cfg := adapt(t, name)
			handlers, verifiers := fusionSetRefs(cfg)
			for _, id := range append(handlers, verifiers...) {
				set, ok := sets.Sets[id]
				if !ok {
					t.Fatalf("%s uses fusion set %q, which fusion-sets.yaml does not define", name, id)
				}
				want := examples[name]
				if set.Mode != want.mode || set.Events != want.events {
					t.Errorf("%s uses fusion set %q with mode %s, threat_events %v; its name promises mode %s, threat_events %v",
						name, id, set.Mode, set.Events, want.mode, want.events)
				}
			}

			raw, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var cc caddy.Config
			if err := caddy.StrictUnmarshalJSON(raw, &cc); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cc); err != nil {
				t.Fatalf("caddy validate %s: %v", name, err)
			}
		})
	}
}

// adapt runs the Caddyfile adapter on an example and fails on any error or
// warning.
func adapt(t *testing.T, name string) map[string]any {
	t.Helper()
	body, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": name})
	if err != nil {
		t.Fatalf("caddy adapt --config %s: %v", name, err)
	}
	for _, w := range warnings {
		t.Errorf("caddy adapt --config %s: warning: %s", name, w.String())
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fusionSetRefs returns the fusion set ids used by fusion_set handlers and
// by fusion_set client certificate verifiers anywhere in cfg.
func fusionSetRefs(cfg any) (handlers, verifiers []string) {
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			id, _ := v["fusion_set"].(string)
			if v["handler"] == "fusion_set" {
				handlers = append(handlers, id)
			}
			if v["verifier"] == "fusion_set" {
				verifiers = append(verifiers, id)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(cfg)
	return handlers, verifiers
}

// writeServerCert writes a self-signed localhost certificate, like the
// README's openssl line.
func writeServerCert(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestExamplesListenLocally: the examples must run next to other services.
// By default each listens on 127.0.0.1 only, on its documented ports, with
// no HTTP->HTTPS redirect listener on port 80; MCC_BIND, MCC_PORT and
// MCC_HANDSHAKE_PORT move them.
func TestExamplesListenLocally(t *testing.T) {
	for _, k := range []string{"MCC_BIND", "MCC_PORT", "MCC_HANDSHAKE_PORT"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)  // unset, so the Caddyfile defaults apply
	}
	defaults := map[string][]string{
		"defense.Caddyfile":        {"127.0.0.1:8443", "127.0.0.1:8444"},
		"detection.Caddyfile":      {"127.0.0.1:8443"},
		"defense-events.Caddyfile": {"127.0.0.1:8443"},
	}
	moved := map[string][]string{
		"defense.Caddyfile":        {"127.0.0.2:9443", "127.0.0.2:9444"},
		"detection.Caddyfile":      {"127.0.0.2:9443"},
		"defense-events.Caddyfile": {"127.0.0.2:9443"},
	}
	for name, want := range defaults {
		t.Run(name, func(t *testing.T) {
			checkListeners(t, adapt(t, name), want)
		})
	}
	t.Setenv("MCC_BIND", "127.0.0.2")
	t.Setenv("MCC_PORT", "9443")
	t.Setenv("MCC_HANDSHAKE_PORT", "9444")
	for name, want := range moved {
		t.Run(name+"/env", func(t *testing.T) {
			checkListeners(t, adapt(t, name), want)
		})
	}
}

// checkListeners checks that the adapted config's HTTP servers listen on
// exactly want and that none adds automatic HTTP->HTTPS redirects (which
// would open port 80).
func checkListeners(t *testing.T, cfg map[string]any, want []string) {
	t.Helper()
	servers, _ := cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	var got []string
	for name, s := range servers {
		srv := s.(map[string]any)
		for _, l := range srv["listen"].([]any) {
			got = append(got, l.(string))
		}
		auto, _ := srv["automatic_https"].(map[string]any)
		if auto["disable_redirects"] != true {
			t.Errorf("server %s: automatic_https.disable_redirects = %v, want true (no port 80 listener)", name, auto["disable_redirects"])
		}
	}
	slices.Sort(got)
	if http, _ := cfg["apps"].(map[string]any)["http"].(map[string]any); http["http_port"] != nil {
		t.Errorf("http_port is set (%v); the examples open no plain HTTP port", http["http_port"])
	}
	if !slices.Equal(got, want) {
		t.Errorf("listen addresses %v, want %v", got, want)
	}
}
