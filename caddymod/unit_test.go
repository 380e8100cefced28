package caddymod

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// failingStore is a threat.Store whose every call fails.
type failingStore struct{}

func (failingStore) Banned(context.Context, string, threat.Subject) (time.Time, error) {
	return time.Time{}, errors.New("store down")
}

func (failingStore) Add(context.Context, string, threat.Subject, int, threat.Policy) (threat.Result, error) {
	return threat.Result{}, errors.New("store down")
}

func (failingStore) Close() error { return nil }

// TestMetricsReRegister: each config load has a new registry; the same
// collectors register into each, and their counts carry over.
func TestMetricsReRegister(t *testing.T) {
	h, leaf := unitHandler(t, zap.NewNop())
	serveOnce(t, h, leaf)
	m := h.state.metrics
	for i := 0; i < 2; i++ {
		reg := prometheus.NewPedanticRegistry()
		if err := m.register(reg); err != nil {
			t.Fatalf("load %d: %v", i, err)
		}
		if err := m.register(reg); err != nil {
			t.Fatalf("load %d, registering twice: %v", i, err)
		}
		fams, err := reg.Gather()
		if err != nil {
			t.Fatalf("load %d: gather: %v", i, err)
		}
		allowed := 0.0
		for _, f := range fams {
			if f.GetName() != "caddy_mcc_decisions_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "none" {
						allowed += m.GetCounter().GetValue()
					}
				}
			}
		}
		if allowed != 1 {
			t.Fatalf("load %d: allowed decisions = %v, want the 1 counted before", i, allowed)
		}
	}
}

// TestHandlerDebugLog: one debug line per decision, with zap fields.
func TestHandlerDebugLog(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h, leaf := unitHandler(t, zap.New(core))
	serveOnce(t, h, leaf)
	entries := logs.FilterMessage("fusion set decision").All()
	if len(entries) != 1 {
		t.Fatalf("%d decision log lines, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["decision"] != "allow" || f["fusion_set"] != "bank-prod" || f["app_id"] != "com.example.bank" || f["build_id"] != fusiontest.GoodBuild {
		t.Errorf("log fields %v", f)
	}
}

func unitHandler(t *testing.T, logger *zap.Logger) (*Handler, *x509.Certificate) {
	t.Helper()
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	// A node name of its own keeps this engine apart from the one a Caddy
	// config of another test may still be running.
	app := &App{FusionSetsFile: corp.SetFile, Node: "unit-" + t.Name(), logger: zap.NewNop()}
	res, err := app.resolve(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	app.res = res
	cfg, err := app.buildConfig()
	if err != nil {
		t.Fatal(err)
	}
	st, keys, _, err := acquireState(app, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = releaseState(keys) })
	return &Handler{FusionSet: corp.SetID, state: st, counters: st.metrics.forSet(corp.SetID), logger: logger}, corp.Case(t, "valid").Leaf()
}

func serveOnce(t *testing.T, h *Handler, leaf *x509.Certificate) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "https://mcc.localhost/", nil)
	req.TLS = &tls.ConnectionState{ServerName: testHost, PeerCertificates: []*x509.Certificate{leaf}}
	w := httptest.NewRecorder()
	called := false
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { called = true; return nil })
	if err := h.ServeHTTP(w, caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, nil), next); err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Fatalf("valid certificate did not reach the next handler: %d %s", w.Code, w.Body)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestForgedUpstreamHeadersRemoved: the handler deletes the upstream
// headers by their canonical names, which is what a parsed request holds
// whatever case the client wrote them in.
func TestForgedUpstreamHeadersRemoved(t *testing.T) {
	for _, name := range upstreamHeaders {
		if c := http.CanonicalHeaderKey(name); c != name {
			t.Fatalf("upstream header %q is not canonical (%q)", name, c)
		}
	}
	h, leaf := unitHandler(t, zap.NewNop())
	raw := "GET / HTTP/1.1\r\nHost: mcc.localhost\r\n" +
		"mcc-threat-event: forged\r\nMCC-REASON-CODE: FORGED\r\nmcc-fusion-set: other\r\nX-Kept: yes\r\n\r\n"
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	req.TLS = &tls.ConnectionState{ServerName: testHost, PeerCertificates: []*x509.Certificate{leaf}}
	var upstream http.Header
	next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		upstream = r.Header.Clone()
		return nil
	})
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, nil), next); err != nil {
		t.Fatal(err)
	}
	if upstream == nil {
		t.Fatalf("valid certificate did not reach the next handler: %d %s", w.Code, w.Body)
	}
	for _, name := range upstreamHeaders {
		if v := upstream.Values(name); len(v) != 0 {
			t.Errorf("upstream got %s: %q", name, v)
		}
	}
	if upstream.Get("X-Kept") != "yes" {
		t.Errorf("other headers lost: %v", upstream)
	}
}
