package fusion_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// TestEventsFromEngine checks the event of every failure class: every
// field of docs/ARCHITECTURE.md "Threat events", valid against the schema, and emitted
// to the pipeline because the corpus set has threat_events on.
func TestEventsFromEngine(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	p, rec := recordingPipeline(t)
	e := loadEngine(t, c.SetFile, fusion.Options{Pipeline: p, Gateway: threat.GatewayEnvoy, Node: "edge-1"})

	var failures []fusiontest.Case
	for _, tc := range c.Cases {
		req := request(tc, "198.51.100.7")
		d := e.Evaluate(context.Background(), c.SetID, req)
		if tc.Want == threat.ReasonNone {
			if d.Event != nil || d.Emitted || d.UpstreamHeaders() != nil {
				t.Errorf("%s: allowed request has an event", tc.Name)
			}
			continue
		}
		failures = append(failures, tc)
		ev := d.Event
		if ev == nil || !d.Emitted {
			t.Fatalf("%s: no emitted event (%+v)", tc.Name, d)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := schematest.ValidateEventJSON(b); err != nil {
			t.Errorf("%s: %v\n%s", tc.Name, err, b)
		}
		checks := map[string]bool{
			"schema":      ev.Schema == threat.SchemaID,
			"id":          len(ev.ID) == 36,
			"time":        !ev.Time.IsZero() && time.Since(ev.Time) < time.Hour,
			"name":        ev.Name == threat.FeatureName,
			"reasonCode":  ev.ReasonCode == tc.Want && d.Reason == tc.Want,
			"reasonData":  ev.ReasonData["error"] != nil,
			"ref":         ev.Ref == "mcc/bank-prod/"+string(tc.Want),
			"scores":      ev.CurrentThreatEventScore == threat.DefaultScores[tc.Want] && ev.ThreatEventsScore == ev.CurrentThreatEventScore,
			"message":     ev.Message == fusion.DefaultMessage,
			"failSafe":    !ev.FailSafeEnforce,
			"externalID":  ev.ExternalID == "req-"+tc.Name,
			"device":      ev.Device["deviceID"] == "device-42" && ev.Device["osVersion"] == "iOS 19.1" && len(ev.Device) == 2,
			"fusionSet":   ev.FusionSet == "bank-prod",
			"mode":        ev.Mode == threat.ModeDefense,
			"action":      ev.Action == threat.ActionBlocked,
			"gateway":     ev.Gateway == threat.GatewayEnvoy && ev.Node == "edge-1",
			"request":     ev.ClientIP == "198.51.100.7" && ev.SNI == "api.example.com" && ev.Host == "api.example.com" && ev.Method == "GET" && ev.Path == "/v1/accounts",
			"no PEM":      !strings.Contains(string(b), "BEGIN"),
			"decision":    d.Action == fusion.Block && d.Status == 403 && d.Message == fusion.DefaultMessage && d.FusionSet == "bank-prod",
			"certificate": certOK(tc, ev),
			"build":       buildOK(tc, ev),
		}
		for name, ok := range checks {
			if !ok {
				t.Errorf("%s: event field check %q failed: %s", tc.Name, name, b)
			}
		}
	}
	got, err := rec.WaitFor(waitCtx(t), len(failures))
	if err != nil {
		t.Fatalf("sink got %d events, want %d: %v", rec.Len(), len(failures), err)
	}
	if err := rec.Err(); err != nil {
		t.Errorf("sink saw invalid events: %v", err)
	}
	for i, ev := range got {
		if ev.ReasonCode != failures[i].Want {
			t.Errorf("sink event %d: %s, want %s", i, ev.ReasonCode, failures[i].Want)
		}
	}
}

func certOK(tc fusiontest.Case, ev *threat.Event) bool {
	leaf := tc.Leaf()
	if leaf == nil || tc.Name == "cert_too_large" {
		return ev.Certificate == nil
	}
	ci := ev.Certificate
	return ci != nil && ci.Serial == leaf.SerialNumber.Text(16) && len(ci.SHA256) == 64 &&
		ci.Subject == leaf.Subject.String() && ci.Issuer == leaf.Issuer.String() &&
		ci.NotBefore.Equal(leaf.NotBefore) && ci.NotAfter.Equal(leaf.NotAfter)
}

func buildOK(tc fusiontest.Case, ev *threat.Event) bool {
	switch tc.Name {
	case "no_cert", "garbage_der", "serial_negative", "build_missing":
		return ev.FusedAppToken == "" && ev.BuildDate == ""
	case "build_blocked":
		return ev.FusedAppToken == fusiontest.BlockedBuild && ev.Certificate.BuildID == fusiontest.BlockedBuild
	case "cert_too_large":
		return ev.Certificate == nil // refused before parsing
	}
	wantApp := "com.example.bank"
	switch tc.Name {
	case "identity_missing", "identity_extra":
		wantApp = ""
	case "identity_with_query":
		wantApp = "com.example.bank" // certid reads the path; the engine compares the whole URI
	case "identity_wrong_app":
		wantApp = "com.example.bank.evil"
	}
	return ev.FusedAppToken != "" && ev.BuildDate != "" && ev.BuildUser == "ci" && ev.BuildHost == "builder-1" &&
		ev.SDKVersion == "mcc-sdk/1.4.2" && ev.Certificate != nil && ev.Certificate.AppID == wantApp
}

// TestModes covers the three modes of docs/ARCHITECTURE.md ("Modes").
func TestModes(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	expired := c.Case(t, "expired")

	t.Run("defense events off", func(t *testing.T) {
		p, rec := recordingPipeline(t)
		e := loadEngine(t, c.WriteSetFile(t, "defense-quiet.yaml", func(s *fusion.SetConfig) { s.ThreatEvents = false }), fusion.Options{Pipeline: p})
		d := e.Evaluate(context.Background(), c.SetID, request(expired, "192.0.2.1"))
		if d.Action != fusion.Block || d.Reason != threat.ReasonCertExpired || d.Emitted || d.Event == nil {
			t.Fatalf("decision %+v", d)
		}
		if d.UpstreamHeaders() != nil {
			t.Errorf("blocked request passes headers upstream")
		}
		// Prove the pipeline works, then that it got only the probe.
		p.Emit(d.Event)
		if _, err := rec.WaitFor(waitCtx(t), 1); err != nil || rec.Len() != 1 {
			t.Fatalf("events: %d %v", rec.Len(), err)
		}
	})

	t.Run("detection events on", func(t *testing.T) {
		p, rec := recordingPipeline(t)
		e := loadEngine(t, c.WriteSetFile(t, "detect.yaml", func(s *fusion.SetConfig) { s.Mode = "detection" }), fusion.Options{Pipeline: p})
		d := e.Evaluate(context.Background(), c.SetID, request(expired, "192.0.2.1"))
		if d.Action != fusion.Allow || d.Reason != threat.ReasonCertExpired || !d.Emitted || d.Status != 0 {
			t.Fatalf("decision %+v", d)
		}
		if d.Event.Action != threat.ActionReported || d.Event.Mode != threat.ModeDetection {
			t.Errorf("event action %q mode %q", d.Event.Action, d.Event.Mode)
		}
		h := d.UpstreamHeaders()
		if h[fusion.HeaderReason] != "CERT_EXPIRED" || h[fusion.HeaderFusionSet] != "bank-prod" {
			t.Errorf("headers %v", h)
		}
		raw, err := base64.RawURLEncoding.DecodeString(h[fusion.HeaderEvent])
		if err != nil {
			t.Fatalf("event header: %v", err)
		}
		if err := schematest.ValidateEventJSON(raw); err != nil {
			t.Errorf("event header: %v", err)
		}
		var back threat.Event
		if err := json.Unmarshal(raw, &back); err != nil || back.ID != d.Event.ID || back.Device["deviceID"] != "device-42" {
			t.Errorf("event header round trip: %v %+v", err, back)
		}
		if _, err := rec.WaitFor(waitCtx(t), 1); err != nil {
			t.Fatal(err)
		}
		ok := e.Evaluate(context.Background(), c.SetID, request(c.Case(t, "valid"), "192.0.2.1"))
		if ok.Action != fusion.Allow || ok.UpstreamHeaders() != nil {
			t.Errorf("valid request: %+v", ok)
		}
	})

	t.Run("custom status and message", func(t *testing.T) {
		e := loadEngine(t, c.WriteSetFile(t, "custom.yaml", func(s *fusion.SetConfig) { s.Status = 451; s.Message = "Update now." }), fusion.Options{})
		d := e.Evaluate(context.Background(), c.SetID, request(expired, "192.0.2.1"))
		if d.Status != 451 || d.Message != "Update now." || d.Event.Message != "Update now." {
			t.Errorf("decision %+v", d)
		}
	})
}

func TestUnknownSetAndPreObservedReasons(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	p, rec := recordingPipeline(t)
	e := loadEngine(t, c.SetFile, fusion.Options{Pipeline: p})
	valid := c.Case(t, "valid")

	d := e.Evaluate(context.Background(), "nope", request(valid, "192.0.2.1"))
	if d.Action != fusion.Block || d.Reason != threat.ReasonConfigError || d.Status != 403 || d.Event == nil || d.Emitted {
		t.Fatalf("unknown set: %+v", d)
	}
	b, _ := json.Marshal(d.Event)
	if err := schematest.ValidateEventJSON(b); err != nil {
		t.Errorf("config error event: %v", err)
	}

	// A TLS-stage caller: the specific reason becomes the cause.
	hs := request(c.Case(t, "expired"), "192.0.2.1")
	hs.Handshake = true
	d = e.Evaluate(context.Background(), c.SetID, hs)
	if d.Reason != threat.ReasonHandshakeFailed || d.Event.ReasonData["cause"] != "CERT_EXPIRED" || d.Action != fusion.Block {
		t.Fatalf("handshake: %+v %v", d, d.Event.ReasonData)
	}
	hsOK := request(valid, "192.0.2.1")
	hsOK.Handshake = true
	if d := e.Evaluate(context.Background(), c.SetID, hsOK); d.Action != fusion.Allow {
		t.Fatalf("handshake valid: %+v", d)
	}

	// A failure the gateway saw itself, reported with the leaf described.
	sp := request(valid, "192.0.2.1")
	sp.Reason, sp.ReasonData = threat.ReasonSpoofedCertHeader, map[string]any{"header": "X-Forwarded-Client-Cert"}
	d = e.Evaluate(context.Background(), c.SetID, sp)
	if d.Reason != threat.ReasonSpoofedCertHeader || d.Action != fusion.Block || d.Event.ReasonData["header"] != "X-Forwarded-Client-Cert" ||
		d.Event.Certificate == nil || d.Event.FusedAppToken != fusiontest.GoodBuild {
		t.Fatalf("pre-observed: %+v", d.Event)
	}
	if _, err := rec.WaitFor(waitCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	if err := rec.Err(); err != nil {
		t.Error(err)
	}
}

func TestDeviceValuesTruncated(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	req := request(c.Case(t, "expired"), "192.0.2.1")
	req.Header.Set(fusiontest.HeaderDeviceID, strings.Repeat("d", 5000))
	d := e.Evaluate(context.Background(), c.SetID, req)
	if got := len(d.Event.Device["deviceID"]); got != 256 {
		t.Errorf("deviceID length %d, want 256", got)
	}
}

// TestVerifiedChainsReuse: a chain the TLS stack verified is reused only
// when it ends in the set's own CA.
func TestVerifiedChainsReuse(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	valid := c.Case(t, "valid")
	d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain, VerifiedChains: [][]*x509.Certificate{{valid.Leaf(), c.CACert}}})
	if d.Action != fusion.Allow {
		t.Fatalf("reused chain: %+v", d)
	}
	// A leaf from another CA with a "verified" chain ending in that CA
	// (as a gateway trusting several CAs would produce) is still untrusted.
	untrusted := c.Case(t, "untrusted_ca")
	fake := [][]*x509.Certificate{{untrusted.Leaf(), untrusted.Leaf()}}
	d = e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: untrusted.Chain, VerifiedChains: fake})
	if d.Reason != threat.ReasonCertUntrusted {
		t.Fatalf("foreign verified chain: %+v", d)
	}
	// Only verified chains, no raw chain: the leaf comes from them.
	d = e.Evaluate(context.Background(), c.SetID, &fusion.Request{VerifiedChains: [][]*x509.Certificate{{valid.Leaf(), c.CACert}}})
	if d.Action != fusion.Allow {
		t.Fatalf("verified chains only: %+v", d)
	}
}

func TestChainTooLarge(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.WriteSetFile(t, "deep.yaml", func(s *fusion.SetConfig) { s.MaxChainDepth = 10 }), fusion.Options{})
	valid := c.Case(t, "valid")
	chain := [][]byte{valid.Chain[0]}
	for i := 0; i < 6; i++ {
		chain = append(chain, make([]byte, 15<<10))
	}
	d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: chain})
	if d.Reason != threat.ReasonCertMalformed || d.Event.ReasonData["error"] != "chain too large" {
		t.Fatalf("decision %+v", d.Event)
	}
}
