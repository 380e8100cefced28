package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/mccgate/mcc/threat"
)

// banFor is the fail-safe ban of TestBanCrossesGateways: short, because the
// test waits for it to end.
const banFor = 3 * time.Second

// A client that crosses the fail-safe threshold at one gateway is blocked
// at the other on its very next request, whichever gateway saw its
// failures (requests at Caddy, Checks or failed handshakes at Envoy, or a
// mix: the scores add up in Redis); other clients are not; and the ban ends
// at both gateways when it expires.
func TestBanCrossesGateways(t *testing.T) {
	f := newFleet(t, banFor)
	var banned []client

	for _, tc := range []struct {
		name   string
		events []failure
		probes []gateway // first: the gateway that saw none of the last failures
	}{
		{
			name:   "flood at caddy, blocked at envoy",
			events: []failure{f.untrustedAt(f.caddy), f.untrustedAt(f.caddy), f.untrustedAt(f.caddy)},
			probes: []gateway{f.envoy, f.caddy},
		},
		{
			name:   "flood at envoy, blocked at caddy",
			events: []failure{f.untrustedAt(f.envoy), f.untrustedAt(f.envoy), f.untrustedAt(f.envoy)},
			probes: []gateway{f.caddy, f.envoy},
		},
		{
			name:   "failed handshakes at envoy, blocked at caddy",
			events: []failure{f.handshakeAtEnvoy(), f.handshakeAtEnvoy(), f.handshakeAtEnvoy()},
			probes: []gateway{f.caddy, f.envoy},
		},
		{
			name:   "scores from both gateways add up",
			events: []failure{f.untrustedAt(f.caddy), f.handshakeAtEnvoy(), f.untrustedAt(f.envoy)},
			probes: []gateway{f.caddy, f.envoy},
		},
		{
			name:   "scores from both gateways add up, crossing at caddy",
			events: []failure{f.untrustedAt(f.envoy), f.untrustedAt(f.caddy), f.untrustedAt(f.caddy)},
			probes: []gateway{f.envoy, f.caddy},
		},
	} {
		ok := t.Run(tc.name, func(t *testing.T) {
			c := f.banAcross(t, tc.events, tc.probes)
			banned = append(banned, c)
			// Someone else, with the same valid certificate, is not.
			f.expectAllowed(t, f.newClient(), f.caddy, f.envoy)
		})
		if !ok {
			// Later cases and the expiry build on a working ban.
			t.FailNow()
		}
	}

	t.Run("bans expire at both gateways", func(t *testing.T) {
		deadline := time.Now().Add(banFor + timeout)
		for _, c := range banned {
			for _, g := range []gateway{f.caddy, f.envoy} {
				for {
					v := mustRequest(t, g, c, f.valid)
					if v.Allowed {
						break
					}
					if !v.blockedFor(threat.ReasonFailSafeActive) {
						t.Fatalf("%s: banned client %s with a valid certificate: %v, want allow or FAIL_SAFE_ACTIVE", g.name(), c, v)
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: client %s is still banned %s after a %s ban", g.name(), c, banFor+timeout, banFor)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		// And it stays allowed at both: the ban ended everywhere, not
		// at one gateway only.
		for _, c := range banned {
			f.expectAllowed(t, c, f.caddy, f.envoy)
		}
	})

	// Redis never failed: neither gateway scored anything locally.
	if n := f.caddy.storeErrors(t); n != 0 {
		t.Errorf("caddy_mcc_store_errors_total = %v, want 0", n)
	}
	if s := f.authz.store.Stats(); !s.Up || s.Errors != 0 {
		t.Errorf("authz store stats %+v, want up with no errors", s)
	}
}

// failure is one thing that scores against a client: a request blocked at
// a gateway, or a failed handshake Envoy reports in its access log.
type failure struct {
	at gateway // nil for a handshake failure
	do func(t *testing.T, c client) verdict
}

// untrustedAt is a request to g with a new certificate from a CA the set
// does not trust: blocked as CERT_UNTRUSTED.
func (f *fleet) untrustedAt(g gateway) failure {
	return failure{at: g, do: func(t *testing.T, c client) verdict {
		t.Helper()
		return expectBlocked(t, g, c, f.invalid(t, threat.ReasonCertUntrusted))
	}}
}

// handshakeAtEnvoy is one failed handshake of the client, reported by
// Envoy's listener-level access log.
func (f *fleet) handshakeAtEnvoy() failure {
	return failure{do: func(t *testing.T, c client) verdict {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := f.authz.handshakeFailures(ctx, c, 1); err != nil {
			t.Fatalf("envoy: reporting a failed handshake of %s: %v", c, err)
		}
		return verdict{}
	}}
}

// maxAttempts bounds how often banAcross starts again because the machine
// was too slow for its verdict to prove anything.
const maxAttempts = 5

// banAcross has a new client earn failures, in order, whose scores reach
// the threshold exactly with the last one, and checks that the client's
// first request with a valid certificate at each of probes, in order, is
// blocked with FAIL_SAFE_ACTIVE. Before the last failure, the client must
// still be allowed at both gateways. It returns the banned client.
//
// A ban lasts f.banFor from the last failure. If a probe was answered after
// that, an allow proves nothing: the attempt is made again with a new client
// rather than the test depending on how fast the machine is.
func (f *fleet) banAcross(t *testing.T, events []failure, probes []gateway) client {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c := f.newClient()
		for _, e := range events[:len(events)-1] {
			e.do(t, c)
		}
		f.expectAllowed(t, c, f.caddy, f.envoy)

		last := events[len(events)-1]
		start := time.Now()
		crossing := last.do(t, c)
		if last.at != nil {
			// The failure that crossed the threshold reports the total
			// of both gateways and that it started the ban.
			e := waitEvent(t, last.at, crossing)
			if !e.FailSafeEnforce || e.ThreatEventsScore != threshold {
				t.Fatalf("%s: the crossing event of %s has failSafeEnforce=%v threatEventsScore=%d, want true and %d",
					last.at.name(), c, e.FailSafeEnforce, e.ThreatEventsScore, threshold)
			}
		}

		conclusive := true
		for _, g := range probes {
			v := mustRequest(t, g, c, f.valid)
			if !v.blockedFor(threat.ReasonFailSafeActive) {
				if time.Since(start) < f.banFor {
					t.Fatalf("%s: client %s reached the threshold, then its valid certificate got %v, want block 403 %s",
						g.name(), c, v, threat.ReasonFailSafeActive)
				}
				conclusive = false
				break
			}
			e := waitEvent(t, g, v)
			if e.ReasonCode != threat.ReasonFailSafeActive || e.Gateway != g.name() || e.ClientIP != c.ip || !e.FailSafeEnforce || e.Action != threat.ActionBlocked {
				t.Fatalf("%s: event of the fail-safe block of %s: reasonCode=%s gateway=%s clientIP=%s failSafeEnforce=%v action=%s",
					g.name(), c, e.ReasonCode, e.Gateway, e.ClientIP, e.FailSafeEnforce, e.Action)
			}
		}
		if conclusive {
			return c
		}
		if attempt == maxAttempts {
			t.Fatalf("in %d attempts, the machine never answered the probes within the %s ban", maxAttempts, f.banFor)
		}
		t.Logf("attempt %d: the probes took longer than the %s ban; again with a new client", attempt, f.banFor)
	}
}
