package fusion_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestCachedAllowAllocations holds the keep-alive budget of README.md ("Performance"): at
// most 2 allocations for a cached allow with the memory store.
func TestCachedAllowAllocations(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	req := request(c.Case(t, "valid"), "192.0.2.1")
	ctx := context.Background()
	e.Evaluate(ctx, c.SetID, req)
	allocs := testing.AllocsPerRun(200, func() {
		if d := e.Evaluate(ctx, c.SetID, req); !d.CacheHit || d.Action != fusion.Allow {
			t.Fatalf("%+v", d)
		}
	})
	if allocs > 2 {
		t.Fatalf("%.1f allocations per cached allow, budget 2", allocs)
	}
}

// TestOddRequests: requests no gateway should send still get a decision.
func TestOddRequests(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	valid := c.Case(t, "valid")
	ctx := context.Background()
	for name, req := range map[string]*fusion.Request{
		"nil request":          nil,
		"empty request":        {},
		"nil verified entries": {VerifiedChains: [][]*x509.Certificate{nil, {nil, nil}}},
		"nil cert in chain":    {PeerCertificates: [][]byte{valid.Chain[0], nil}},
		"empty leaf":           {PeerCertificates: [][]byte{{}}},
		"bogus verified chain": {PeerCertificates: valid.Chain, VerifiedChains: [][]*x509.Certificate{{nil}, {valid.Leaf(), nil}}},
	} {
		d := e.Evaluate(ctx, c.SetID, req)
		if d.Reason == "" && name != "bogus verified chain" {
			t.Errorf("%s: allowed: %+v", name, d)
		}
		if d.Reason != "" && d.Event == nil {
			t.Errorf("%s: no event (recovered panic?): %+v", name, d)
		}
	}
}

// TestWatchInlineConfig: a config built from compiled sets (Caddyfile
// blocks) has no file of its own; Watch reloads its revocation lists.
func TestWatchInlineConfig(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	sc := c.Set
	sc.TrustedCA = fusion.CASource{PEM: string(c.CAPEM)}
	set, err := fusion.CompileSet(sc, c.Dir, "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fusion.NewConfig(set)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fusion.NewConfig(set, set); err == nil {
		t.Fatal("duplicate ids accepted")
	}
	e, err := fusion.NewEngine(cfg, fusion.Options{Gateway: threat.GatewayCaddy})
	if err != nil {
		t.Fatal(err)
	}
	victim := c.Issue(t, nil, nil)
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Action != fusion.Allow {
		t.Fatalf("before: %+v", d)
	}
	reloads := make(chan *fusion.Config, 1)
	appendRevoked(t, c.RevocationFile, victim.Leaf())
	startWatch(t, e, func(cfg *fusion.Config) { trySend(reloads, cfg) }, func(err error) { t.Errorf("watch: %v", err) })
	select {
	case got := <-reloads:
		if got != cfg {
			t.Errorf("inline reload replaced the config")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Watch did not reload the revocation list")
	}
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("after: %+v", d)
	}
}
