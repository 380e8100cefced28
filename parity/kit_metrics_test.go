package parity

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// kitSeries is one gateway's metrics: type by family name, and the label
// names and values of each series.
type kitSeries struct {
	types  map[string]string
	series map[string][]map[string]string
}

// TestKitParityMetrics: after the same requests, each gateway exports under
// its prefix exactly the metrics the shared table gives it (name, type,
// labels), the rows both export appear at both, and a good request is
// counted with reason="none" at both.
func TestKitParityMetrics(t *testing.T) {
	corpus, file := kitSetup(t, "parity-kit-metrics.yaml")

	cfg, err := fusion.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := threat.NewFileSink(filepath.Join(t.TempDir(), "authz-events.jsonl"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	pipeline := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{sink}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = pipeline.Close(ctx)
	})
	reg := prometheus.NewRegistry()
	svc, err := envoyext.New(envoyext.Options{Config: cfg, Node: "parity", Pipeline: pipeline, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}

	// The same traffic at both: a good certificate (twice: a cache hit)
	// from a header, and a request with none.
	good := envoytest.XFCC(corpus.Case(t, "valid_via_intermediate").Chain)
	for i := 0; i < 2; i++ {
		if r := kitCaddyDo(t, "/xfcc/v1", http.Header{"X-Forwarded-Client-Cert": {good}}); r.status != http.StatusOK {
			t.Fatalf("Caddy good request: %d %q", r.status, r.body)
		}
		resp := svc.Check(context.Background(), envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank-prod", Chain: corpus.Case(t, "valid_via_intermediate").Chain, SourceAddr: "127.0.0.1:1000", Method: "GET", Path: "/xfcc/v1"}))
		if resp.GetOkResponse() == nil {
			t.Fatalf("Check good request: %v", resp.GetStatus())
		}
	}
	kitCaddyDo(t, "/direct/v1", nil)
	svc.Check(context.Background(), envoytest.CheckRequest(envoytest.Check{FusionSet: "bank-prod", SourceAddr: "127.0.0.1:1001", Method: "GET", Path: "/direct/v1"}))

	// Events reach the sinks asynchronously; wait for both to count one.
	var caddyM, authzM kitSeries
	deadline := time.Now().Add(timeout)
	for {
		caddyM = kitScrapeCaddy(t)
		authzM = kitGather(t, reg)
		if kitHasSeries(caddyM, adapter.MetricEvents.Name(adapter.Caddy), "result", adapter.LabelDelivered, "1") &&
			kitHasSeries(authzM, adapter.MetricEvents.Name(adapter.Authz), "result", adapter.LabelDelivered, "1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivered event counted at both gateways:\nCaddy %v\nauthz %v", caddyM.series[adapter.MetricEvents.Name(adapter.Caddy)], authzM.series[adapter.MetricEvents.Name(adapter.Authz)])
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, gw := range []struct {
		g Gateway
		m kitSeries
	}{{adapter.Caddy, caddyM}, {adapter.Authz, authzM}} {
		kitCheckAgainstTable(t, gw.g, gw.m)
	}
	// The rows both gateways export, at both (CRL rows need a CRL in the
	// set, which appear at both or at neither).
	for _, m := range adapter.Metrics {
		if m.Gateways != adapter.Both {
			continue
		}
		_, atCaddy := caddyM.types[m.Name(adapter.Caddy)]
		_, atAuthz := authzM.types[m.Name(adapter.Authz)]
		if atCaddy != atAuthz || (!atCaddy && !onlyWithCRLOrURL(m.Suffix)) {
			t.Errorf("%s: exported by Caddy %v, by authz %v; want both", m.Suffix, atCaddy, atAuthz)
		}
	}
	// The same outcomes, the same label values.
	for _, c := range []struct{ action, reason string }{{"allow", adapter.LabelNoReason}, {"block", string(threat.ReasonNoClientCert)}} {
		for _, gw := range []struct {
			g Gateway
			m kitSeries
		}{{adapter.Caddy, caddyM}, {adapter.Authz, authzM}} {
			name := adapter.MetricDecisions.Name(gw.g)
			found := false
			for _, s := range gw.m.series[name] {
				if s["fusion_set"] == "bank-prod" && s["action"] == c.action && s["reason"] == c.reason && s["value"] != "0" {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no %s{action=%q,reason=%q} series counted: %v", gw.g.Prefix(), name, c.action, c.reason, gw.m.series[name])
			}
		}
	}
}

// Gateway is adapter.Gateway, short for the tables above.
type Gateway = adapter.Gateway

// kitCheckAgainstTable: every metric under the gateway's prefix is a row
// of the table for that gateway, with its type and label names.
func kitCheckAgainstTable(t *testing.T, g Gateway, m kitSeries) {
	t.Helper()
	rows := map[string]adapter.Metric{}
	for _, r := range adapter.Metrics {
		if r.Gateways&g != 0 {
			rows[r.Name(g)] = r
		}
	}
	var names []string
	for name := range m.types {
		if strings.HasPrefix(name, g.Prefix()) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	t.Logf("%s exports %v", g.Prefix(), names)
	if len(names) < 8 {
		t.Fatalf("%s: only %d metrics exported: %v", g.Prefix(), len(names), names)
	}
	for _, name := range names {
		row, ok := rows[name]
		if !ok {
			t.Errorf("%s is exported but not in adapter.Metrics (docs/metrics.md)", name)
			continue
		}
		if m.types[name] != string(row.Type) {
			t.Errorf("%s: type %s, table says %s", name, m.types[name], row.Type)
		}
		want := strings.Join(row.Labels, ",")
		for _, s := range m.series[name] {
			var got []string
			for k := range s {
				if k != "value" && k != "le" {
					got = append(got, k)
				}
			}
			sort.Strings(got)
			wantSorted := append([]string(nil), row.Labels...)
			sort.Strings(wantSorted)
			if strings.Join(got, ",") != strings.Join(wantSorted, ",") {
				t.Errorf("%s: labels %v, table says %s", name, got, want)
				break
			}
		}
	}
}

func kitHasSeries(m kitSeries, name, label, value, count string) bool {
	for _, s := range m.series[name] {
		if s[label] == value && s["value"] == count {
			return true
		}
	}
	return false
}

// kitScrapeCaddy reads Caddy's /metrics from the admin endpoint.
func kitScrapeCaddy(t *testing.T) kitSeries {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := kitSeries{types: map[string]string{}, series: map[string][]map[string]string{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out.types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name, labels := line[:i], map[string]string{"value": line[i+1:]}
		if j := strings.IndexByte(name, '{'); j >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(name[j+1:], "}"), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					labels[k] = strings.Trim(v, `"`)
				}
			}
			name = name[:j]
		}
		family := name
		if _, ok := out.types[name]; !ok {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				family = strings.TrimSuffix(family, suf)
			}
		}
		out.series[family] = append(out.series[family], labels)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// kitGather reads an authz registry the way a scrape would.
func kitGather(t *testing.T, reg *prometheus.Registry) kitSeries {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := kitSeries{types: map[string]string{}, series: map[string][]map[string]string{}}
	for _, mf := range mfs {
		out.types[mf.GetName()] = strings.ToLower(mf.GetType().String())
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			labels["value"] = fmt.Sprint(v)
			out.series[mf.GetName()] = append(out.series[mf.GetName()], labels)
		}
	}
	return out
}

// onlyWithCRLOrURL says whether a row exists only for sets that have a
// CRL file or revocation URLs (the parity sets have neither URLs nor,
// in some runs, a CRL).
func onlyWithCRLOrURL(suffix string) bool {
	switch suffix {
	case adapter.MetricCRLNextUpdate.Suffix, adapter.MetricCRLStatus.Suffix,
		adapter.MetricRevocationURLUp.Suffix, adapter.MetricRevocationURLLastSuccess.Suffix:
		return true
	}
	return false
}
