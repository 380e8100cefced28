package fusion_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// BenchmarkCloneCachedGoodPath is the cached good path of one build
// certificate used by many clients (1,000 addresses and device ids, each
// returning), with clone detection off and on, with the memory store. The
// difference of the two is what clone counting adds per request; issue 13
// budgets it at 200 ns and one allocation. The maxima are out of reach so
// that every request is a plain allow.
func BenchmarkCloneCachedGoodPath(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	valid := c.Case(b, "valid")
	const clients = 1000
	reqs := make([]*fusion.Request, clients)
	for i := range reqs {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		reqs[i] = from(request(valid, ip), ip, fmt.Sprint("device-", i))
	}
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			file := c.WriteSetFile(b, fmt.Sprintf("bench-clone-%v.yaml", on), func(sc *fusion.SetConfig) {
				if on {
					sc.CloneDetection = &fusion.CloneDetection{MaxAddresses: 1 << 20, MaxDevices: 1 << 20}
				}
			})
			benchCachedGoodPath(b, file, c.SetID, reqs)
		})
	}
}

// benchCachedGoodPath loads an engine on file with a memory store, warms
// its cache with every request (each must be a plain allow), and times
// the requests round robin, each a cached plain allow.
func benchCachedGoodPath(b *testing.B, file, setID string, reqs []*fusion.Request) {
	e := loadEngine(b, file, fusion.Options{Store: threat.NewMemoryStore(nil)})
	ctx := context.Background()
	for _, r := range reqs {
		if d := e.Evaluate(ctx, setID, r); d.Action != fusion.Allow || d.Reason != threat.ReasonNone {
			b.Fatalf("%s %s", d.Action, d.Reason)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := e.Evaluate(ctx, setID, reqs[i%len(reqs)]); !d.CacheHit || d.Reason != threat.ReasonNone {
			b.Fatalf("hit %v reason %s", d.CacheHit, d.Reason)
		}
	}
}
