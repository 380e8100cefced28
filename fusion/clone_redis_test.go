package fusion_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// TestCloneDetectionSharedRedis: two gateways' engines on one Redis count
// one certificate's uses together, so the use that reaches max_addresses is
// reported once across both, whichever gateway sees it; the reported client
// is banned at both, the certificate at neither.
func TestCloneDetectionSharedRedis(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	valid := c.Case(t, "valid")
	srv := redistest.New(t)
	ctx := context.Background()
	file := c.WriteSetFile(t, "clone-redis.yaml", func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDetection), true
		sc.CloneDetection = &fusion.CloneDetection{MaxAddresses: 10}
		sc.FailSafe = &fusion.FailSafe{Threshold: threat.DefaultScores[threat.ReasonRateAnomaly]}
	})
	var engines []*fusion.Engine
	var store *redisstore.Store
	for range 2 {
		st, err := redisstore.New(ctx, srv.URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		store = st
		engines = append(engines, loadEngine(t, file, fusion.Options{Store: st}))
	}
	reports := 0
	for i := range 19 { // the next report would come at 20
		ip := fmt.Sprintf("198.51.100.%d", i+1)
		d := engines[i%2].Evaluate(ctx, c.SetID, from(request(valid, ip), ip, fmt.Sprint("device-", i)))
		if d.Action != fusion.Allow {
			t.Fatalf("use %d: %s %s", i, d.Action, d.Reason)
		}
		if d.Reason == threat.ReasonRateAnomaly {
			reports++
			if d.Event.ReasonData["addresses"] != 10 || i != 9 {
				t.Errorf("reported at use %d with %v addresses, want at the 10th", i+1, d.Event.ReasonData["addresses"])
			}
		}
	}
	if reports != 1 {
		t.Errorf("%d reports across two gateways, want 1", reports)
	}
	for _, e := range engines {
		if d := e.Evaluate(ctx, c.SetID, from(request(valid, "198.51.100.10"), "198.51.100.10", "device-new")); d.Reason != threat.ReasonFailSafeActive {
			t.Errorf("the reported address: %s, want FAIL_SAFE_ACTIVE at every gateway", d.Reason)
		}
	}
	bans, err := store.Bans(ctx, c.SetID)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bans {
		if b.Kind == threat.SubjectCertificate {
			t.Errorf("the genuine certificate is banned: %+v", b)
		}
	}
	if len(bans) == 0 {
		t.Error("nobody was scored to a ban")
	}
}
