package fusion_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

func failSafeSet(mode string) func(*fusion.SetConfig) {
	return func(s *fusion.SetConfig) {
		s.Mode = mode
		s.ThreatEvents = true
		s.FailSafe = &fusion.FailSafe{Threshold: 50, Window: fusion.Duration(time.Minute), Duration: fusion.Duration(10 * time.Minute)}
		s.Scores = map[string]int{"CERT_UNTRUSTED": 30}
	}
}

// TestFailSafeDetection: in detection mode failures pass, until the score
// crosses the threshold; then the client is blocked in every mode, for the
// ban's duration, by IP, device id or certificate.
func TestFailSafeDetection(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	clock := newFakeClock(c.Now)
	p, rec := recordingPipeline(t)
	e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", failSafeSet("detection")), fusion.Options{Clock: clock.Now, Pipeline: p})
	bad, valid := c.Case(t, "untrusted_ca"), c.Case(t, "valid")
	ctx := context.Background()

	d := e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	if d.Action != fusion.Allow || d.Reason != threat.ReasonCertUntrusted || d.Event.FailSafeEnforce ||
		d.Event.CurrentThreatEventScore != 30 || d.Event.ThreatEventsScore != 30 {
		t.Fatalf("first failure: %+v %+v", d, d.Event)
	}
	d = e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	if d.Action != fusion.Block || d.Reason != threat.ReasonCertUntrusted || !d.Event.FailSafeEnforce ||
		d.Event.ThreatEventsScore != 60 || d.Event.Action != threat.ActionBlocked || d.Status != 403 {
		t.Fatalf("threshold crossed: %+v %+v", d, d.Event)
	}
	// Banned by IP, even with a valid certificate.
	d = e.Evaluate(ctx, c.SetID, request(valid, "203.0.113.5"))
	if d.Action != fusion.Block || d.Reason != threat.ReasonFailSafeActive || !d.Event.FailSafeEnforce || d.Event.CurrentThreatEventScore != 0 {
		t.Fatalf("banned client: %+v", d)
	}
	// Banned by device id from another IP (request() sends device-42).
	if d := e.Evaluate(ctx, c.SetID, request(valid, "203.0.113.99")); d.Reason != threat.ReasonFailSafeActive {
		t.Fatalf("banned device from another IP: %+v", d)
	}
	// Another device on another IP is fine.
	other := request(valid, "203.0.113.100")
	other.Header.Set(fusiontest.HeaderDeviceID, "device-7")
	if d := e.Evaluate(ctx, c.SetID, other); d.Action != fusion.Allow || d.Reason != "" {
		t.Fatalf("other client: %+v", d)
	}
	clock.Add(11 * time.Minute)
	if d := e.Evaluate(ctx, c.SetID, request(valid, "203.0.113.5")); d.Action != fusion.Allow {
		t.Fatalf("after the ban: %+v", d)
	}
	if _, err := rec.WaitFor(waitCtx(t), 4); err != nil {
		t.Fatal(err)
	}
	if err := rec.Err(); err != nil {
		t.Error(err)
	}
}

// TestFailSafeStoreErrors: a failing store never fails a request; scoring
// continues in the fallback, errors are counted and logged once a minute.
func TestFailSafeStoreErrors(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	clock := newFakeClock(c.Now)
	core, logs := observer.New(zapcore.InfoLevel)
	e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", failSafeSet("defense")), fusion.Options{
		Clock: clock.Now, Store: brokenStore{}, Logger: zap.New(core)})
	bad, valid := c.Case(t, "untrusted_ca"), c.Case(t, "valid")
	ctx := context.Background()

	if d := e.Evaluate(ctx, c.SetID, request(valid, "203.0.113.5")); d.Action != fusion.Allow {
		t.Fatalf("valid request with a broken store: %+v", d)
	}
	d := e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	if d.Reason != threat.ReasonCertUntrusted || d.Event.FailSafeEnforce {
		t.Fatalf("first failure: %+v", d)
	}
	d = e.Evaluate(ctx, c.SetID, request(bad, "203.0.113.5"))
	if !d.Event.FailSafeEnforce || d.Event.ThreatEventsScore != 60 {
		t.Fatalf("fallback did not score: %+v", d.Event)
	}
	if d := e.Evaluate(ctx, c.SetID, request(valid, "203.0.113.5")); d.Reason != threat.ReasonFailSafeActive {
		t.Fatalf("fallback ban not enforced: %+v", d)
	}
	st := e.Stats()
	if st.StoreErrors < 6 || !st.StoreFallback {
		t.Fatalf("stats %+v", st)
	}
	if n := logs.FilterMessageSnippet("threat store failed").Len(); n != 1 {
		t.Fatalf("%d warnings within a minute, want 1", n)
	}
	clock.Add(61 * time.Second)
	e.Evaluate(ctx, c.SetID, request(valid, "203.0.113.200"))
	warns := logs.FilterMessageSnippet("threat store failed").All()
	if len(warns) != 2 || warns[1].ContextMap()["errors_since_last_warning"].(uint64) == 0 {
		t.Fatalf("warnings after a minute: %v", warns)
	}
}

type brokenStore struct{}

var errStoreDown = errors.New("store down")

func (brokenStore) Banned(context.Context, string, threat.Subject) (time.Time, error) {
	return time.Time{}, errStoreDown
}

func (brokenStore) Add(context.Context, string, threat.Subject, int, threat.Policy) (threat.Result, error) {
	return threat.Result{}, errStoreDown
}

func (brokenStore) Close() error { return nil }
