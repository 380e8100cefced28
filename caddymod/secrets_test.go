package caddymod

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// TestStoreSecretPlaceholders: a Redis password given through {env.NAME} or
// {file.PATH} reaches Redis (a real redis-server with requirepass, which
// refuses a wrong one), but never the config Caddy serves on its admin
// /config nor its autosave file. Today's code put the literal URL, password
// included, in both.
func TestStoreSecretPlaceholders(t *testing.T) {
	rs := redistest.New(t)
	password := rs.RequirePassword()
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	// A trailing newline, as `echo` writes it: Caddy's {file.*} drops it.
	writeFile(t, pwFile, []byte(password+"\n"), 0o600)
	t.Setenv("MCC_TEST_REDIS_URL", "redis://:"+password+"@"+rs.Addr()+"/0")

	for _, tc := range []struct {
		name, store string
	}{
		{"env", "{env.MCC_TEST_REDIS_URL}"},
		{"file", "redis://:{file." + pwFile + "}@" + rs.Addr() + "/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetCaddy(t)
			srv := newServerTLS(t)
			corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
			up := newUpstream(t)
			sink := filepath.Join(t.TempDir(), "events.jsonl")
			setFile := failSafeSetFile(t, corp, "secret.yaml", threat.ModeDefense, "Blocked.")
			cfg := strings.Replace(failSafeConfig(srv, setFile, sink, corp.SetID, up.addr()),
				"\t\tsink file", fmt.Sprintf("\t\tstore redis %s\n\t\tsink file", tc.store), 1)
			// Autosave on, to check what Caddy writes to disk.
			cfg = strings.Replace(cfg, "\tpersist_config off\n", "", 1)
			if strings.Contains(cfg, "persist_config") {
				t.Fatal("the test config still turns autosave off")
			}
			if err := os.Remove(caddy.ConfigAutosavePath); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			loadCaddyfile(t, cfg)

			// The store works: loading would have failed on a wrong
			// password (the store is opened and pinged at provisioning),
			// and a failure is scored in Redis without a store error.
			if r := newClient(t, srv, nil, otherIP).mustGet(t, "/", "Accept: application/json"); r.status != http.StatusForbidden {
				t.Fatalf("request without a certificate: %d %q, want 403", r.status, r.body)
			}
			if got := scrapeMetrics(t)["caddy_mcc_store_errors_total"]; got != 0 {
				t.Errorf("caddy_mcc_store_errors_total = %v, want 0", got)
			}

			resp, err := adminClient().Get(fmt.Sprintf("http://localhost:%d/config/", adminPort))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /config/: %d", resp.StatusCode)
			}
			if strings.Contains(string(body), password) {
				t.Fatal("the admin /config serves the Redis password")
			}
			if !strings.Contains(string(body), tc.store) {
				t.Errorf("the admin /config does not show the placeholder %s", tc.store)
			}
			saved, err := os.ReadFile(caddy.ConfigAutosavePath)
			if err != nil {
				t.Fatalf("reading the autosave file: %v", err)
			}
			if !strings.Contains(string(saved), `"mcc"`) {
				t.Fatalf("the autosave file does not hold this config")
			}
			if strings.Contains(string(saved), password) {
				t.Fatal("the autosave file holds the Redis password")
			}
		})
	}
}

// TestStorePlaceholderErrors: a placeholder that expands to nothing, or to
// something that is not a store, refuses the config with an error that
// names the setting and the placeholder, never a secret; the running config
// keeps serving.
func TestStorePlaceholderErrors(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := failSafeSetFile(t, corp, "secret-errors.yaml", threat.ModeDefense, "Blocked.")
	good := failSafeConfig(srv, setFile, sink, corp.SetID, up.addr())
	loadCaddyfile(t, good)
	t.Setenv("MCC_TEST_NOT_A_STORE", "postgres://user:hunter2@db/x")
	for _, tc := range []struct {
		store string
		want  []string
	}{
		{"{env.MCC_TEST_UNSET_VARIABLE}", []string{"store", "{env.MCC_TEST_UNSET_VARIABLE}", "empty"}},
		{"redis://:{file." + filepath.Join(t.TempDir(), "missing") + "}@127.0.0.1:1/0", []string{"store", "{file.", "empty"}},
		{"{env.MCC_TEST_NOT_A_STORE}", []string{"store", "nor a redis:// or rediss:// URL"}},
	} {
		cfg := strings.Replace(good, "\t\tsink file", fmt.Sprintf("\t\tstore redis %s\n\t\tsink file", tc.store), 1)
		status, body := postLoad(t, cfg, "text/caddyfile")
		if status == http.StatusOK {
			t.Errorf("store %s: config accepted", tc.store)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("store %s: error %q does not say %q", tc.store, body, w)
			}
		}
		if strings.Contains(body, "hunter2") {
			t.Errorf("store %s: error shows the password: %q", tc.store, body)
		}
	}
	// The last good config still serves.
	valid := corp.Case(t, "valid").TLSCertificate()
	if r := newClient(t, srv, &valid, directIP).mustGet(t, "/"); r.status != http.StatusOK {
		t.Fatalf("after refused configs: %d %q", r.status, r.body)
	}
}
