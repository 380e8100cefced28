package fusion_test

import (
	"context"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// TestStatsBans: the engine counts a ban once, on the failure that takes a
// client's score to the threshold; failures of a banned client and later
// scoring do not count it again; a new ban after it expired counts again.
func TestStatsBans(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	clock := newFakeClock(c.Now)
	e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", failSafeSet("detection")), fusion.Options{Clock: clock.Now})
	bad := c.Case(t, "untrusted_ca")
	ctx := context.Background()

	e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	if n := e.Stats().Bans; n != 0 {
		t.Fatalf("bans = %d below the threshold", n)
	}
	e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5")) // 60 >= 50
	e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5")) // banned: FAIL_SAFE_ACTIVE
	if n := e.Stats().Bans; n != 1 {
		t.Fatalf("bans = %d after one client crossed the threshold, want 1", n)
	}
	// After the ban and the window, the same client can be banned again.
	clock.Add(11 * time.Minute)
	e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	if st := e.Stats(); st.Bans != 2 || st.StoreErrors != 0 || st.StoreFallback {
		t.Fatalf("stats %+v, want 2 bans and a healthy store", st)
	}
}

// TestStatsStoreDegraded: a Redis store whose circuit breaker is open is
// reported as the engine's fallback state before any call of the engine's
// fails, and no longer once Redis is back.
func TestStatsStoreDegraded(t *testing.T) {
	srv := redistest.New(t)
	st, err := redisstore.New(context.Background(), srv.URL(), redisstore.Options{Cooldown: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", failSafeSet("detection")), fusion.Options{Store: st})
	if s := e.Stats(); s.StoreFallback || s.StoreErrors != 0 {
		t.Fatalf("healthy store: %+v", s)
	}

	srv.Stop()
	// Calls outside the engine trip the breaker.
	for !st.Degraded() {
		_, _ = st.Banned(context.Background(), "other", threat.Subject{IP: "192.0.2.1"})
	}
	if s := e.Stats(); !s.StoreFallback || s.StoreErrors != 0 {
		t.Fatalf("open breaker: %+v, want the fallback state and no engine error", s)
	}

	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for e.Stats().StoreFallback {
		if time.Now().After(deadline) {
			t.Fatalf("still degraded 30s after Redis came back: %+v", st.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
