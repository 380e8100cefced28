package caddymod

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/threat"
)

// fakeClock is a movable time source for the pooled state's clock hook.
type fakeClock = testclock.Clock

// failSafeSetFile writes the corpus set with fail-safe enforcement: three
// NO_CLIENT_CERT events (10 points each) ban a client for 15 minutes.
func failSafeSetFile(t *testing.T, corp *fusiontest.Corpus, name string, mode threat.Mode, message string) string {
	return corp.WriteSetFile(t, name, func(sc *fusion.SetConfig) {
		sc.Mode = string(mode)
		sc.Message = message
		sc.FailSafe = &fusion.FailSafe{
			Threshold: 30,
			Window:    fusion.Duration(10 * time.Minute),
			Duration:  fusion.Duration(15 * time.Minute),
		}
	})
}

func failSafeConfig(srv serverTLS, setFile, sink, setID, upstreamAddr string) string {
	return globalOptions() + trustedProxiesOption + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", setID, upstreamAddr))
}

// blockReason returns the reason code of a JSON block page ("" when the
// response is not one).
func blockReason(r response) string {
	var body struct{ ReasonCode string }
	if json.Unmarshal([]byte(r.body), &body) != nil {
		return ""
	}
	return body.ReasonCode
}

// TestFailSafeBansOneClient: repeated failures from one client IP cross the
// threshold; that client is then blocked even with a valid certificate (in
// detection mode too), others are not, and the ban ends after its duration.
func TestFailSafeBansOneClient(t *testing.T) {
	for _, mode := range []threat.Mode{threat.ModeDetection, threat.ModeDefense} {
		t.Run(string(mode), func(t *testing.T) {
			resetCaddy(t)
			srv := newServerTLS(t)
			corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
			up := newUpstream(t)
			sink := filepath.Join(t.TempDir(), "events.jsonl")
			setFile := failSafeSetFile(t, corp, "failsafe.yaml", mode, "Blocked.")
			loadCaddyfile(t, failSafeConfig(srv, setFile, sink, corp.SetID, up.addr()))

			clk := testclock.New(time.Now())
			runningState(t).store.clock.set(clk.Now)

			valid := corp.Case(t, "valid").TLSCertificate()
			accept := "Accept: application/json"

			// Two failures from otherIP: under the threshold.
			for i := 0; i < 2; i++ {
				r := newClient(t, srv, nil, otherIP).mustGet(t, "/", accept)
				if reason := blockReason(r); reason == string(threat.ReasonFailSafeActive) {
					t.Fatalf("failure %d already banned: %q", i+1, r.body)
				}
			}
			if r := newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept); r.status != http.StatusOK {
				t.Fatalf("valid certificate under the threshold: %d %q", r.status, r.body)
			}
			// The third failure reaches 30: the client is banned, whatever the mode.
			r := newClient(t, srv, nil, otherIP).mustGet(t, "/", accept)
			if r.status != http.StatusForbidden {
				t.Fatalf("failure crossing the threshold: %d %q, want 403", r.status, r.body)
			}
			r = newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept)
			if r.status != http.StatusForbidden || blockReason(r) != string(threat.ReasonFailSafeActive) {
				t.Fatalf("banned client with a valid certificate: %d %q, want 403 FAIL_SAFE_ACTIVE", r.status, r.body)
			}
			// Another client, same valid certificate: not banned.
			if r := newClient(t, srv, &valid, directIP).mustGet(t, "/", accept); r.status != http.StatusOK {
				t.Fatalf("other client: %d %q, want 200", r.status, r.body)
			}
			// A client behind the trusted proxy is judged by its forwarded IP.
			if r := newClient(t, srv, &valid, proxyIP).mustGet(t, "/", accept, "X-Forwarded-For: "+otherIP); r.status != http.StatusForbidden {
				t.Fatalf("banned IP via the trusted proxy: %d %q, want 403", r.status, r.body)
			}
			if r := newClient(t, srv, &valid, proxyIP).mustGet(t, "/", accept, "X-Forwarded-For: "+forwardedIP); r.status != http.StatusOK {
				t.Fatalf("other IP via the trusted proxy: %d %q, want 200", r.status, r.body)
			}

			m := scrapeMetrics(t)
			if got := m["caddy_mcc_fail_safe_bans_total"]; got != 1 {
				t.Errorf("caddy_mcc_fail_safe_bans_total = %v, want 1", got)
			}
			if got := m["caddy_mcc_store_errors_total"]; got != 0 {
				t.Errorf("caddy_mcc_store_errors_total = %v, want 0", got)
			}
			key := series("caddy_mcc_decisions_total", "fusion_set", corp.SetID, "action", "block", "reason", string(threat.ReasonFailSafeActive))
			if got := m[key]; got != 2 {
				t.Errorf("%s = %v, want 2", key, got)
			}

			evs := waitEvents(t, sink, 5)
			enforced := 0
			for _, ev := range evs {
				if ev.ReasonCode == threat.ReasonFailSafeActive {
					enforced++
					if !ev.FailSafeEnforce || ev.Action != threat.ActionBlocked || ev.ClientIP != otherIP {
						t.Errorf("fail-safe event %+v: want failSafeEnforce, blocked, client %s", ev, otherIP)
					}
				}
			}
			if enforced != 2 {
				t.Errorf("%d FAIL_SAFE_ACTIVE events, want 2", enforced)
			}

			// Still banned just before the end of the ban, free after it.
			clk.Add(14 * time.Minute)
			if r := newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept); r.status != http.StatusForbidden {
				t.Fatalf("14 minutes into a 15 minute ban: %d %q, want 403", r.status, r.body)
			}
			clk.Add(2 * time.Minute)
			if r := newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept); r.status != http.StatusOK {
				t.Fatalf("after the ban: %d %q, want 200", r.status, r.body)
			}
		})
	}
}
