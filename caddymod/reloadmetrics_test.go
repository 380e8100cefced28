package caddymod

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestReloadMetrics: a refused Caddy reload (the fusion set file does not
// load) and a refused file change seen by the watcher are counted in
// caddy_mcc_config_reloads_total{result="failure"} and clear
// caddy_mcc_config_last_reload_successful, on the /metrics of the config
// that keeps serving; a good change sets it back.
func TestReloadMetrics(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := corp.WriteSetFile(t, "reloads.yaml", func(sc *fusion.SetConfig) { sc.Message = "v1" })
	cfgFor := func(file string) string {
		return globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
		watch_interval 50ms
	}
}
`, file, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	}
	loadCaddyfile(t, cfgFor(setFile))

	key := func(trigger, result string) string {
		return series("caddy_mcc_config_reloads_total", "trigger", trigger, "result", result)
	}
	const lastOK = "caddy_mcc_config_last_reload_successful"
	m := scrapeMetrics(t)
	for _, k := range []string{key("config", "failure"), key("watch", "failure"), key("config", "success"), lastOK} {
		if _, ok := m[k]; !ok {
			t.Fatalf("/metrics has no %s", k)
		}
	}
	if m[lastOK] != 1 {
		t.Fatalf("%s = %v after a good load, want 1", lastOK, m[lastOK])
	}
	base := m

	// A Caddy reload whose fusion set file is broken: refused.
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	writeFile(t, broken, []byte("fusion_sets:\n  - id: bank-prod\n    mode: [\n"), 0o644)
	if status, body := postLoad(t, cfgFor(broken), "text/caddyfile"); status == http.StatusOK {
		t.Fatalf("a broken fusion set file was accepted: %s", body)
	}
	m = scrapeMetrics(t)
	if got, want := m[key("config", "failure")], base[key("config", "failure")]+1; got != want {
		t.Errorf("config failures = %v, want %v", got, want)
	}
	if m[lastOK] != 0 {
		t.Errorf("%s = %v after a refused reload, want 0", lastOK, m[lastOK])
	}

	// The watcher meets a broken file.
	writeFile(t, setFile, []byte("fusion_sets:\n  - id: bank-prod\n    mode: [\n"), 0o644)
	waitFor(t, "the watcher's failure to be counted", func() bool {
		return scrapeMetrics(t)[key("watch", "failure")] > base[key("watch", "failure")]
	})
	// And then a good one.
	corp.WriteSetFile(t, "reloads.yaml", func(sc *fusion.SetConfig) { sc.Message = "v2" })
	waitFor(t, "the watcher's success to be counted", func() bool {
		m := scrapeMetrics(t)
		return m[key("watch", "success")] > base[key("watch", "success")] && m[lastOK] == 1
	})
}
