package fusion_test

import (
	"context"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestHostileCorpus evaluates every corpus case, cold and then cached, and
// checks its reason code.
func TestHostileCorpus(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	cfg, err := fusion.LoadFile(c.SetFile)
	if err != nil {
		t.Fatalf("loading corpus set: %v", err)
	}
	e, err := fusion.NewEngine(cfg, fusion.Options{Gateway: threat.GatewayCaddy, Node: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[threat.Reason]bool{}
	for _, tc := range c.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			for round := 0; round < 2; round++ {
				d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: tc.Chain, ClientIP: "192.0.2.10"})
				if d.Reason != tc.Want {
					data := map[string]any(nil)
					if d.Event != nil {
						data = d.Event.ReasonData
					}
					t.Fatalf("round %d: reason %q, want %q (reasonData %v)", round, d.Reason, tc.Want, data)
				}
				wantAction := fusion.Block
				if tc.Want == threat.ReasonNone {
					wantAction = fusion.Allow
				}
				if d.Action != wantAction {
					t.Fatalf("round %d: action %v, want %v", round, d.Action, wantAction)
				}
			}
		})
		seen[tc.Want] = true
	}
	for _, r := range []threat.Reason{threat.ReasonNone, threat.ReasonNoClientCert, threat.ReasonCertUntrusted, threat.ReasonCertExpired,
		threat.ReasonCertNotYetValid, threat.ReasonCertRevoked, threat.ReasonIdentityMismatch, threat.ReasonWeakCrypto,
		threat.ReasonWrongKeyUsage, threat.ReasonCertMalformed, threat.ReasonBuildBlocked} {
		if !seen[r] {
			t.Errorf("corpus has no case for %q", r)
		}
	}
}
