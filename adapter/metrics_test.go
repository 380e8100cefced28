package adapter

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

var update = flag.Bool("update", false, "rewrite docs/metrics.md from the metric table")

// TestMetricsDoc: docs/metrics.md lists exactly the table.
func TestMetricsDoc(t *testing.T) {
	path := filepath.Join("..", "docs", "metrics.md")
	want := MetricsMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./adapter -run TestMetricsDoc -update writes it)", err)
	}
	if string(got) != want {
		t.Errorf("%s is not the metric table; run go test ./adapter -run TestMetricsDoc -update", path)
	}
}

// TestMetricTable: names are unique per gateway and every row names a
// gateway, a type and a help text.
func TestMetricTable(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Metrics {
		if m.Gateways == 0 || m.Type == "" || m.Help == "" || m.Suffix == "" {
			t.Errorf("incomplete row %+v", m)
		}
		for _, g := range []Gateway{Caddy, Authz} {
			if m.Gateways&g == 0 {
				continue
			}
			if n := m.Name(g); seen[n] {
				t.Errorf("%s twice in the table", n)
			} else {
				seen[n] = true
			}
		}
	}
	if Caddy.Prefix() != "caddy_mcc_" || Authz.Prefix() != "mcc_authz_" {
		t.Errorf("prefixes %q %q", Caddy.Prefix(), Authz.Prefix())
	}
}

// TestDecisionLabels: a good request is reason="none" at both gateways, and
// the two gateways' counters differ only by prefix.
func TestDecisionLabels(t *testing.T) {
	for _, g := range []Gateway{Caddy, Authz} {
		d := NewDecisions(g)
		d.ForSet("bank").Inc(fusion.Allow, threat.ReasonNone)
		d.ForSet("bank").Inc(fusion.Block, threat.ReasonCertRevoked)
		d.ForSet("bank").Inc(fusion.Block, threat.Reason("NEWER_THAN_THIS_BUILD"))
		for _, c := range []struct {
			action, reason string
		}{{"allow", "none"}, {"block", "CERT_REVOKED"}, {"block", "NEWER_THAN_THIS_BUILD"}} {
			if got := counterValue(t, d.vec.WithLabelValues("bank", c.action, c.reason)); got != 1 {
				t.Errorf("%s: %s{action=%s,reason=%s} = %v, want 1", g.Prefix(), MetricDecisions.Suffix, c.action, c.reason, got)
			}
		}
		if got := counterValue(t, d.vec.WithLabelValues("bank", "allow", "")); got != 0 {
			t.Errorf("%s: a good request counted under reason=\"\"", g.Prefix())
		}
	}
}

// TestEngineCollector: the engine's own counters, under each gateway's
// prefix, with the names of the table.
func TestEngineCollector(t *testing.T) {
	st := fusion.EngineStats{CacheHits: 3, CacheMisses: 2, CacheEntries: 1, CacheBytes: 700, StoreErrors: 4, StoreFallback: true, Bans: 5}
	for _, g := range []Gateway{Caddy, Authz} {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewEngineCollector(g, func() fusion.EngineStats { return st }))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				got[mf.GetName()] = v
			}
		}
		want := map[string]float64{MetricCacheHits.Name(g): 3, MetricCacheMisses.Name(g): 2, MetricCacheEntries.Name(g): 1,
			MetricCacheBytes.Name(g): 700, MetricStoreErrors.Name(g): 4, MetricStoreFallback.Name(g): 1, MetricBans.Name(g): 5}
		if len(got) != len(want) {
			t.Errorf("%s: %d metrics, want %d: %v", g.Prefix(), len(got), len(want), got)
		}
		for name, v := range want {
			if got[name] != v {
				t.Errorf("%s = %v, want %v", name, got[name], v)
			}
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
