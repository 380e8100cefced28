// Package store benchmarks the fail-safe store on the request path: the
// same fusion engine decisions with the embedded memory store and with the
// Redis store (a real redis-server on loopback), side by side.
//
//	go test -run '^$' -bench . -benchtime 1s ./bench/store/
//
// Each benchmark reports ns/op (wall time per decision across all
// goroutines, so 1e9/ns/op is decisions per second) and the p50 and p99
// latency of one decision as seen by its caller; the difference between the
// redis and memory rows is what the store adds.
package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// rig is one engine over one store, with the corpus to feed it.
type rig struct {
	corpus *fusiontest.Corpus
	engine *fusion.Engine
	store  threat.Store
}

// newRig builds an engine whose set has fail-safe enforcement on, so that
// every decision asks the store about bans and every failure scores. The
// threshold is out of reach: a benchmark must not ban itself.
func newRig(tb testing.TB, kind string) *rig {
	tb.Helper()
	c := fusiontest.NewCorpus(tb, "bench", "com.example.bench")
	path := c.WriteSetFile(tb, "bench.yaml", func(sc *fusion.SetConfig) {
		sc.Mode = "defense"
		sc.ThreatEvents = false
		sc.FailSafe = &fusion.FailSafe{Threshold: 1 << 30, Window: fusion.Duration(time.Minute), Duration: fusion.Duration(time.Minute)}
	})
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var st threat.Store
	switch kind {
	case "memory":
		st = threat.NewMemoryStore(nil)
	case "redis":
		srv := redistest.New(tb)
		// Timeouts roomier than the 50 ms defaults: on a shared 2-core
		// runner a healthy read can stall that long, the breaker would
		// open, and the figures would be the memory fallback's.
		rs, err := redisstore.New(context.Background(), srv.URL(), redisstore.Options{
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		})
		if err != nil {
			tb.Fatal(err)
		}
		st = rs
	}
	tb.Cleanup(func() { _ = st.Close() })
	e, err := fusion.NewEngine(cfg, fusion.Options{Store: st, Gateway: threat.GatewayCaddy})
	if err != nil {
		tb.Fatal(err)
	}
	return &rig{corpus: c, engine: e, store: st}
}

// TestRigDecides keeps the benchmark honest: with the Redis store, the
// valid certificate is allowed (from the cache on the second request), and
// a revoked one is blocked and scored in Redis.
func TestRigDecides(t *testing.T) {
	r := newRig(t, "redis")
	ctx := context.Background()
	valid := r.corpus.Case(t, "valid")
	for i := range 2 {
		d := r.engine.Evaluate(ctx, "bench", &fusion.Request{PeerCertificates: valid.Chain, ClientIP: "192.0.2.1"})
		if d.Action != fusion.Allow || d.CacheHit != (i == 1) {
			t.Fatalf("request %d: %+v, want allow (cached the second time)", i, d)
		}
	}
	revoked := r.corpus.Case(t, "revoked_serial")
	d := r.engine.Evaluate(ctx, "bench", &fusion.Request{PeerCertificates: revoked.Chain, ClientIP: "192.0.2.2"})
	if d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("revoked: %+v", d)
	}
	res, err := r.store.Add(ctx, "bench", threat.Subject{IP: "192.0.2.2"}, 0, threat.Policy{})
	if err != nil || res.Total != threat.DefaultScores[threat.ReasonCertRevoked] {
		t.Fatalf("score in Redis = %+v, %v; want the revoked score", res, err)
	}
	if st := r.engine.Stats(); st.StoreErrors != 0 {
		t.Fatalf("engine stats %+v: the Redis store failed", st)
	}
}

// parallelism is the goroutines per CPU: 1 is one request in flight per
// core, 8 is a gateway with many concurrent requests (what hides Redis's
// round trip).
var parallelism = []int{1, 8}

// BenchmarkEvaluate: parallel decisions on a valid cached certificate (one
// Banned per decision) and on a revoked one (Banned plus Add).
func BenchmarkEvaluate(b *testing.B) {
	for _, cert := range []string{"valid", "revoked_serial"} {
		for _, par := range parallelism {
			for _, kind := range []string{"memory", "redis"} {
				b.Run(fmt.Sprintf("%s/par%d/%s", cert, par, kind), func(b *testing.B) {
					b.SetParallelism(par)
					r := newRig(b, kind)
					chain := r.corpus.Case(b, cert).Chain
					ctx := context.Background()
					r.engine.Evaluate(ctx, "bench", &fusion.Request{PeerCertificates: chain, ClientIP: "192.0.2.1"}) // warm the cache
					measure(b, func(i int, ip string) {
						r.engine.Evaluate(ctx, "bench", &fusion.Request{PeerCertificates: chain, ClientIP: ip})
					})
					if st := r.engine.Stats(); st.StoreErrors != 0 {
						b.Fatalf("%d store errors: the figures are the fallback's, not Redis's", st.StoreErrors)
					}
				})
			}
		}
	}
}

// BenchmarkStore: the store alone, Banned then Add per op, in parallel.
func BenchmarkStore(b *testing.B) {
	p := threat.Policy{Threshold: 1 << 30, Window: time.Minute, BanFor: time.Minute}
	for _, par := range parallelism {
		for _, kind := range []string{"memory", "redis"} {
			b.Run(fmt.Sprintf("par%d/%s", par, kind), func(b *testing.B) {
				b.SetParallelism(par)
				r := newRig(b, kind)
				ctx := context.Background()
				var errs sync.Map
				measure(b, func(i int, ip string) {
					sub := threat.Subject{IP: ip, CertSHA: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
					if _, err := r.store.Banned(ctx, "bench", sub); err != nil {
						errs.Store(err.Error(), true)
					}
					if _, err := r.store.Add(ctx, "bench", sub, 1, p); err != nil {
						errs.Store(err.Error(), true)
					}
				})
				errs.Range(func(k, _ any) bool { b.Fatalf("store error: %v", k); return false })
			})
		}
	}
}

// measure runs op in parallel and reports the p50 and p99 of one op.
func measure(b *testing.B, op func(i int, ip string)) {
	var mu sync.Mutex
	var all []time.Duration
	worker := 0
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		worker++
		ip := fmt.Sprintf("198.51.100.%d", worker%250)
		mu.Unlock()
		lat := make([]time.Duration, 0, 1024)
		for i := 0; pb.Next(); i++ {
			t0 := time.Now()
			op(i, ip)
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds()), "p99-ns")
}
