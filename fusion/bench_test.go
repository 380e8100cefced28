package fusion_test

import (
	"context"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// BenchmarkEvaluateCached is the keep-alive path: a valid certificate whose
// verdict is cached, the default memory store, events off for allows.
// Budget: well under 1 µs and at most 2 allocs/op.
func BenchmarkEvaluateCached(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	e := loadEngine(b, c.SetFile, fusion.Options{})
	req := request(c.Case(b, "valid"), "192.0.2.1")
	ctx := context.Background()
	if d := e.Evaluate(ctx, c.SetID, req); d.Action != fusion.Allow {
		b.Fatalf("%+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := e.Evaluate(ctx, c.SetID, req); !d.CacheHit {
			b.Fatal("cache miss")
		}
	}
}

// BenchmarkEvaluateCachedParallel is the same under concurrency.
func BenchmarkEvaluateCachedParallel(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	e := loadEngine(b, c.SetFile, fusion.Options{})
	req := request(c.Case(b, "valid"), "192.0.2.1")
	ctx := context.Background()
	e.Evaluate(ctx, c.SetID, req)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d := e.Evaluate(ctx, c.SetID, req); !d.CacheHit {
				b.Error("cache miss")
				return
			}
		}
	})
}

// BenchmarkEvaluateCold verifies the chain every time (cache disabled by
// swapping the config each iteration would cost more; a cache of one entry
// alternating two certificates keeps every lookup a miss).
func BenchmarkEvaluateCold(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	e := loadEngine(b, c.SetFile, fusion.Options{CacheSize: 1})
	reqs := []*fusion.Request{request(c.Case(b, "valid"), "192.0.2.1"), request(c.Issue(b, nil, nil), "192.0.2.1")}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := e.Evaluate(ctx, c.SetID, reqs[i&1]); d.CacheHit || d.Action != fusion.Allow {
			b.Fatalf("%+v", d)
		}
	}
}

// BenchmarkEvaluateFailure is a blocked request with its event (events on,
// no pipeline): the cost a hostile client imposes once its verdict is cached.
func BenchmarkEvaluateFailure(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	e := loadEngine(b, c.SetFile, fusion.Options{})
	req := request(c.Case(b, "revoked_serial"), "192.0.2.1")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := e.Evaluate(ctx, c.SetID, req); d.Reason != threat.ReasonCertRevoked {
			b.Fatalf("%+v", d)
		}
	}
}
