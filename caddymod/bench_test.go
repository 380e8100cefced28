package caddymod

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion/fusiontest"
)

// benchHandler builds a handler on a real engine without a running Caddy.
func benchHandler(b *testing.B) (*Handler, *x509.Certificate) {
	corp := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	app := &App{FusionSetsFile: corp.SetFile, Node: "bench", logger: zap.NewNop()}
	res, err := app.resolve(caddy.NewReplacer())
	if err != nil {
		b.Fatal(err)
	}
	app.res = res
	cfg, err := app.buildConfig()
	if err != nil {
		b.Fatal(err)
	}
	st, keys, _, err := acquireState(app, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = releaseState(keys) })
	h := &Handler{FusionSet: corp.SetID, state: st, counters: st.metrics.forSet(corp.SetID), logger: zap.NewNop()}
	return h, corp.Case(b, "valid").Leaf()
}

// BenchmarkHandlerCached measures one request with a cached good
// certificate: "baseline" is Caddy's own request preparation and the next
// handler, "fusion_set" adds this handler; the difference is its cost.
func BenchmarkHandlerCached(b *testing.B) {
	h, leaf := benchHandler(b)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	req := httptest.NewRequest(http.MethodGet, "https://mcc.localhost/account", nil)
	req.TLS = &tls.ConnectionState{ServerName: testHost, PeerCertificates: []*x509.Certificate{leaf}}
	w := httptest.NewRecorder()
	prepare := func() *http.Request {
		return caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, nil)
	}
	// Warm the verdict cache.
	if err := h.ServeHTTP(w, prepare(), next); err != nil {
		b.Fatal(err)
	}
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = next.ServeHTTP(w, prepare())
		}
	})
	b.Run("fusion_set", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = h.ServeHTTP(w, prepare(), next)
		}
	})
	// Every core on the same cached certificate: what shared locks and
	// counters on the path cost.
	b.Run("fusion_set_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// The handler edits the request's header: one per goroutine.
			own := req.Clone(context.Background())
			w := httptest.NewRecorder()
			for pb.Next() {
				_ = h.ServeHTTP(w, caddyhttp.PrepareRequest(own, caddy.NewReplacer(), w, nil), next)
			}
		})
	})
}
