package fusion_test

import (
	"context"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// BenchmarkEvaluateCachedIntermediate is the keep-alive path of a client
// that presents an intermediate: a hit compares the SHA-256 of each
// presented certificate after the leaf with the cached one.
func BenchmarkEvaluateCachedIntermediate(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	e := loadEngine(b, c.SetFile, fusion.Options{})
	req := request(c.Case(b, "valid_via_intermediate"), "192.0.2.1")
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
