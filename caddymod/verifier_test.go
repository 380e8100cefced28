package caddymod

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestVerifierRejectsInHandshake: with `verifier fusion_set` under
// verify_if_given, a certificate Go's verification accepts but the fusion
// set refuses fails the handshake, and a request without a certificate (which
// the verifier never sees) is blocked by the handler. Both are events.
func TestVerifierRejectsInHandshake(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, corp.SetFile, sink) + site(srv, fmt.Sprintf(`			mode verify_if_given
			trust_pool file %s
			verifier fusion_set %s`, corp.CAFile, corp.SetID),
		fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)

	before := scrapeMetrics(t)

	valid := corp.Case(t, "valid").TLSCertificate()
	if r := newClient(t, srv, &valid, "").mustGet(t, "/", "X-Test-Id: valid"); r.status != http.StatusOK {
		t.Fatalf("valid certificate: %d %q", r.status, r.body)
	}

	// Chains that pass Go's verification against the CA but fail the set.
	rejected := []string{"revoked_serial", "identity_wrong_app", "build_blocked", "spki_pin_mismatch"}
	for _, name := range rejected {
		tc := corp.Case(t, name)
		cert := tc.TLSCertificate()
		r, err := newClient(t, srv, &cert, "").get(t, "/", "X-Test-Id: "+name)
		if err == nil {
			t.Fatalf("%s: the handshake succeeded (status %d %q); the verifier should have failed it", name, r.status, r.body)
		}
		if _, ok := up.headers(name); ok {
			t.Fatalf("%s: the upstream got the request", name)
		}
	}

	r := newClient(t, srv, nil, "").mustGet(t, "/", "X-Test-Id: nocert", "Accept: application/json")
	if r.status != http.StatusForbidden {
		t.Fatalf("no certificate under verify_if_given: %d %q, want the handler's 403", r.status, r.body)
	}

	evs := waitEvents(t, sink, len(rejected)+1)
	if len(evs) != len(rejected)+1 {
		t.Fatalf("%d events, want %d", len(evs), len(rejected)+1)
	}
	causes := map[string]bool{}
	noCert := 0
	for _, ev := range evs {
		switch ev.ReasonCode {
		case threat.ReasonHandshakeFailed:
			cause, _ := ev.ReasonData["cause"].(string)
			causes[cause] = true
			if ev.ClientIP != "" || ev.Action != threat.ActionBlocked || ev.Gateway != threat.GatewayCaddy || ev.Certificate == nil {
				t.Errorf("handshake event %+v: want no client IP (the verifier has none), action blocked, a certificate", ev)
			}
		case threat.ReasonNoClientCert:
			noCert++
			if ev.ClientIP != directIP {
				t.Errorf("handler event client IP %q, want %s", ev.ClientIP, directIP)
			}
		default:
			t.Errorf("unexpected event %s", ev.ReasonCode)
		}
	}
	for _, name := range rejected {
		want := string(corp.Case(t, name).Want)
		if !causes[want] {
			t.Errorf("no HANDSHAKE_FAILED event with cause %s (have %v)", want, causes)
		}
	}
	if noCert != 1 {
		t.Errorf("%d NO_CLIENT_CERT events, want 1", noCert)
	}

	after := scrapeMetrics(t)
	key := series("caddy_mcc_decisions_total", "fusion_set", corp.SetID, "action", "block", "reason", string(threat.ReasonHandshakeFailed))
	if got := after[key] - before[key]; got != float64(len(rejected)) {
		t.Errorf("%s grew by %v, want %d", key, got, len(rejected))
	}
	key = series("caddy_mcc_decisions_total", "fusion_set", corp.SetID, "action", "block", "reason", string(threat.ReasonNoClientCert))
	if got := after[key] - before[key]; got != 1 {
		t.Errorf("%s grew by %v, want 1", key, got)
	}
}

// TestVerifierDetectionModeAllowsHandshake: in detection mode the verifier
// reports but never fails a handshake; the handler then passes the event on.
func TestVerifierDetectionModeAllowsHandshake(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	setFile := corp.WriteSetFile(t, "detection.yaml", func(sc *fusion.SetConfig) { sc.Mode = string(threat.ModeDetection) })
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, fmt.Sprintf(`			mode require_and_verify
			trust_pool file %s
			verifier fusion_set %s`, corp.CAFile, corp.SetID),
		fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)

	cert := corp.Case(t, "revoked_serial").TLSCertificate()
	r := newClient(t, srv, &cert, "").mustGet(t, "/", "X-Test-Id: revoked")
	if r.status != http.StatusOK {
		t.Fatalf("detection mode: %d %q, want 200", r.status, r.body)
	}
	h, _ := up.headers("revoked")
	if got := h.Get(fusion.HeaderReason); got != string(threat.ReasonCertRevoked) {
		t.Errorf("upstream reason %q, want CERT_REVOKED", got)
	}
	// One event from the handshake, one from the request.
	evs := waitEvents(t, sink, 2)
	reasons := map[threat.Reason]int{}
	for _, ev := range evs {
		reasons[ev.ReasonCode]++
		if ev.Action != threat.ActionReported {
			t.Errorf("detection event action %q", ev.Action)
		}
	}
	if reasons[threat.ReasonHandshakeFailed] != 1 || reasons[threat.ReasonCertRevoked] != 1 {
		t.Errorf("events by reason %v, want one HANDSHAKE_FAILED and one CERT_REVOKED", reasons)
	}
}
