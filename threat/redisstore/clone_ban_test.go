package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// TestCloneBanForParityWithMemoryStore: a use that asks for the
// certificate's ban (threat.CertUse.BanFor, block_installs) bans it, in
// both stores alike, once a count reaches its maximum and not before; the
// ban is the one Banned checks for the certificate; a live ban is not
// renewed; and in Redis it rides in the counting call: one round trip.
func TestCloneBanForParityWithMemoryStore(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	opts := testOptions()
	opts.Now = clock
	rs := newStore(t, srv.URL(), opts)
	var trips roundTrips
	rs.client.AddHook(&trips)
	stores := map[string]interface {
		threat.CloneCounter
		threat.Store
	}{"redis": rs, "memory": threat.NewMemoryStore(clock)}
	p := threat.ClonePolicy{Window: time.Hour, MaxAddresses: 3, BlockInstalls: true}
	const banFor = 10 * time.Minute
	near := func(a, b time.Time) bool { d := a.Sub(b); return d > -time.Second && d < time.Second }
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			trips.n.Store(0)
			cert := "install-cert-" + name
			var first time.Time
			for i := 1; i <= 5; i++ {
				addr := fmt.Sprintf("198.51.100.%d", i)
				until, res, err := st.BannedCounting(ctx, "s", threat.Subject{IP: addr, CertSHA: cert}, threat.CertUse{CertSHA: cert, Address: addr, At: now, BanFor: banFor}, p)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case i < 3:
					if !res.CertBannedUntil.IsZero() || !until.IsZero() {
						t.Fatalf("use %d, under the maximum: certificate banned until %v, ban check %v", i, res.CertBannedUntil, until)
					}
				case i == 3:
					if !near(res.CertBannedUntil, now.Add(banFor)) || !until.IsZero() {
						t.Fatalf("use 3, at the maximum: certificate banned until %v (want %v), ban check before it %v", res.CertBannedUntil, now.Add(banFor), until)
					}
					first = res.CertBannedUntil
				default:
					if !near(res.CertBannedUntil, first) || !near(until, first) {
						t.Errorf("use %d: certificate banned until %v, ban check %v; want the first ban, %v, not renewed", i, res.CertBannedUntil, until, first)
					}
				}
			}
			if until, err := st.Banned(ctx, "s", threat.Subject{CertSHA: cert}); err != nil || !near(until, first) {
				t.Errorf("Banned for the certificate: %v %v, want %v", until, err, first)
			}
			// Without BanFor (a build certificate, or detection mode)
			// nothing is banned, over the maximum or not.
			other := "build-cert-" + name
			for i := 1; i <= 5; i++ {
				addr := fmt.Sprintf("203.0.113.%d", i)
				if _, res, err := st.BannedCounting(ctx, "s", threat.Subject{}, threat.CertUse{CertSHA: other, Address: addr, At: now}, p); err != nil || !res.CertBannedUntil.IsZero() {
					t.Fatalf("use %d without BanFor: %v %v", i, res.CertBannedUntil, err)
				}
			}
			if until, _ := st.Banned(ctx, "s", threat.Subject{CertSHA: other}); !until.IsZero() {
				t.Errorf("a certificate counted without BanFor is banned until %v", until)
			}
			if name == "redis" {
				if got := trips.n.Load(); got != 5+1+5+1 {
					t.Errorf("%d round trips for 12 calls: the ban must ride in the counting script", got)
				}
			}
		})
	}
}
