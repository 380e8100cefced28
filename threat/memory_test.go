package threat_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/threat"
)

// clock is the shared settable test clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)) }

var policy = threat.Policy{Threshold: 100, Window: time.Minute, BanFor: 10 * time.Minute}

func mustAdd(t *testing.T, s threat.Store, ns string, sub threat.Subject, delta int, p threat.Policy) threat.Result {
	t.Helper()
	r, err := s.Add(context.Background(), ns, sub, delta, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustBanned(t *testing.T, s threat.Store, ns string, sub threat.Subject) time.Time {
	t.Helper()
	until, err := s.Banned(context.Background(), ns, sub)
	if err != nil {
		t.Fatal(err)
	}
	return until
}

func TestMemoryStoreThresholdBanAndExpiry(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	sub := threat.Subject{IP: "192.0.2.1"}

	for i, want := range []int{30, 60, 90} {
		r := mustAdd(t, s, "set", sub, 30, policy)
		if r.Total != want || !r.BannedUntil.IsZero() {
			t.Fatalf("add %d: %+v, want total %d and no ban", i, r, want)
		}
		c.Add(time.Second)
	}
	if until := mustBanned(t, s, "set", sub); !until.IsZero() {
		t.Fatalf("banned until %v below the threshold", until)
	}

	banAt := c.Now()
	r := mustAdd(t, s, "set", sub, 30, policy)
	if r.Total != 120 || !r.BannedUntil.Equal(banAt.Add(policy.BanFor)) {
		t.Fatalf("threshold add: %+v, want total 120 banned until %v", r, banAt.Add(policy.BanFor))
	}
	if until := mustBanned(t, s, "set", sub); !until.Equal(banAt.Add(policy.BanFor)) {
		t.Fatalf("Banned = %v, want %v", until, banAt.Add(policy.BanFor))
	}

	// A further failure while banned reports the ban but does not extend it.
	c.Add(time.Minute)
	r = mustAdd(t, s, "set", sub, 30, policy)
	if !r.BannedUntil.Equal(banAt.Add(policy.BanFor)) {
		t.Fatalf("add while banned: %+v, want the existing ban", r)
	}

	// One nanosecond before expiry the ban holds; at expiry it is gone.
	c.Add(banAt.Add(policy.BanFor).Sub(c.Now()) - time.Nanosecond)
	if until := mustBanned(t, s, "set", sub); until.IsZero() {
		t.Fatal("ban ended early")
	}
	c.Add(time.Nanosecond)
	if until := mustBanned(t, s, "set", sub); !until.IsZero() {
		t.Fatalf("ban still active at its expiry: %v", until)
	}
}

func TestMemoryStoreFixedWindowStartsAtFirstScore(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	sub := threat.Subject{DeviceID: "dev-1"}

	mustAdd(t, s, "set", sub, 50, policy) // window [0, 60s)
	c.Add(59 * time.Second)
	if r := mustAdd(t, s, "set", sub, 40, policy); r.Total != 90 {
		t.Fatalf("inside the window: total %d, want 90", r.Total)
	}
	// The window is fixed from the first score, not sliding: at 60s it
	// restarts, even though the last score was a second ago.
	c.Add(time.Second)
	if r := mustAdd(t, s, "set", sub, 40, policy); r.Total != 40 || !r.BannedUntil.IsZero() {
		t.Fatalf("new window: %+v, want total 40 and no ban", r)
	}
}

func TestMemoryStoreSubjectKeysAreIndependent(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	const ip, dev, cert = "198.51.100.7", "device-9", "ab12"

	// Scores from three requests that share only the device id.
	mustAdd(t, s, "set", threat.Subject{IP: "10.0.0.1", DeviceID: dev}, 40, policy)
	mustAdd(t, s, "set", threat.Subject{IP: "10.0.0.2", DeviceID: dev, CertSHA: cert}, 40, policy)
	r := mustAdd(t, s, "set", threat.Subject{IP: ip, DeviceID: dev}, 40, policy)
	if r.Total != 120 || r.BannedUntil.IsZero() {
		t.Fatalf("device crossed the threshold: %+v", r)
	}

	// The device is banned wherever it shows up, and only it.
	if mustBanned(t, s, "set", threat.Subject{IP: "203.0.113.1", DeviceID: dev}).IsZero() {
		t.Error("device id not banned from a new IP")
	}
	for _, sub := range []threat.Subject{{IP: ip}, {IP: "10.0.0.1"}, {CertSHA: cert}, {DeviceID: ip}, {CertSHA: dev}} {
		if until := mustBanned(t, s, "set", sub); !until.IsZero() {
			t.Errorf("%+v banned until %v: only the device id crossed the threshold", sub, until)
		}
	}

	// Total is the highest of the subject's keys.
	if r := mustAdd(t, s, "set", threat.Subject{IP: ip, CertSHA: cert}, 10, policy); r.Total != 50 {
		t.Errorf("total %d, want 50 (the certificate's score)", r.Total)
	}

	// An empty subject has no keys: nothing to score, never banned.
	if r := mustAdd(t, s, "set", threat.Subject{}, 500, policy); r.Total != 0 || !r.BannedUntil.IsZero() {
		t.Errorf("empty subject: %+v", r)
	}
}

func TestMemoryStoreBannedReturnsLatestBan(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	short := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: time.Minute}
	long := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: time.Hour}
	mustAdd(t, s, "set", threat.Subject{IP: "192.0.2.1"}, 10, long)
	mustAdd(t, s, "set", threat.Subject{CertSHA: "cc"}, 10, short)
	got := mustBanned(t, s, "set", threat.Subject{IP: "192.0.2.1", CertSHA: "cc"})
	if want := c.Now().Add(time.Hour); !got.Equal(want) {
		t.Fatalf("Banned = %v, want the later ban %v", got, want)
	}
}

func TestMemoryStoreNamespacesAreIsolated(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	sub := threat.Subject{IP: "192.0.2.1", DeviceID: "d", CertSHA: "c"}
	mustAdd(t, s, "bank-prod", sub, 60, policy)
	if r := mustAdd(t, s, "bank-staging", sub, 60, policy); r.Total != 60 || !r.BannedUntil.IsZero() {
		t.Fatalf("other namespace saw the first one's score: %+v", r)
	}
	if r := mustAdd(t, s, "bank-prod", sub, 60, policy); r.BannedUntil.IsZero() {
		t.Fatalf("bank-prod did not ban at 120: %+v", r)
	}
	if !mustBanned(t, s, "bank-staging", sub).IsZero() {
		t.Error("a ban in bank-prod applies in bank-staging")
	}
	if mustBanned(t, s, "bank-prod", sub).IsZero() {
		t.Error("bank-prod ban missing")
	}
}

func TestMemoryStorePolicyEdges(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	sub := threat.Subject{IP: "192.0.2.1"}

	// No threshold: scores accumulate for reporting but nobody is banned.
	if r := mustAdd(t, s, "off", sub, 1000, threat.Policy{}); r.Total != 1000 || !r.BannedUntil.IsZero() {
		t.Errorf("disabled policy: %+v", r)
	}
	// No window: DefaultWindow applies.
	mustAdd(t, s, "nowindow", sub, 5, threat.Policy{Threshold: 100, BanFor: time.Minute})
	c.Add(threat.DefaultWindow - time.Second)
	if r := mustAdd(t, s, "nowindow", sub, 5, threat.Policy{Threshold: 100, BanFor: time.Minute}); r.Total != 10 {
		t.Errorf("default window: total %d, want 10", r.Total)
	}
	// A zero delta (such as FAIL_SAFE_ACTIVE's score) never starts a ban.
	p := threat.Policy{Threshold: 1, Window: time.Minute, BanFor: time.Minute}
	if r := mustAdd(t, s, "zero", sub, 0, p); !r.BannedUntil.IsZero() {
		t.Errorf("zero delta banned: %+v", r)
	}
}

func TestMemoryStoreBanEndsThenRebans(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	sub := threat.Subject{IP: "192.0.2.1"}
	p := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: time.Minute}
	first := mustAdd(t, s, "set", sub, 10, p).BannedUntil
	c.Add(2 * time.Minute)
	if !mustBanned(t, s, "set", sub).IsZero() {
		t.Fatal("ban outlived its expiry")
	}
	second := mustAdd(t, s, "set", sub, 10, p).BannedUntil
	if !second.After(first) || !mustBanned(t, s, "set", sub).Equal(second) {
		t.Fatalf("re-ban: first %v, second %v", first, second)
	}
}

func TestMemoryStoreCleansUpExpiredEntries(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	for i := range 10_000 {
		mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("10.0.%d.%d", i/256, i%256)}, 1, policy)
	}
	if n := s.Len(); n != 10_000 {
		t.Fatalf("Len = %d, want 10000", n)
	}
	c.Add(policy.Window)
	// Later traffic frees expired entries a few at a time...
	for i := range 1000 {
		mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("172.16.%d.%d", i/256, i%256)}, 1, policy)
	}
	if n := s.Len(); n >= 10_000 {
		t.Errorf("Len = %d after 1000 adds past the window: nothing was cleaned up", n)
	}
	// ...and Sweep frees the rest.
	s.Sweep(0)
	if n := s.Len(); n != 1000 {
		t.Errorf("Len = %d after Sweep, want the 1000 live entries", n)
	}
}

func TestMemoryStoreSweepKeepsBans(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	sub := threat.Subject{IP: "192.0.2.1"}
	p := threat.Policy{Threshold: 1, Window: time.Second, BanFor: time.Hour}
	mustAdd(t, s, "set", sub, 1, p)
	c.Add(time.Minute) // the window is long gone, the ban is not
	s.Sweep(0)
	if mustBanned(t, s, "set", sub).IsZero() {
		t.Fatal("Sweep dropped a live ban")
	}
	c.Add(time.Hour)
	s.Sweep(0)
	if s.Len() != 0 {
		t.Fatalf("Len = %d after the ban expired, want 0", s.Len())
	}
}

func TestMemoryStoreIsBounded(t *testing.T) {
	c := newClock()
	const limit = 6400
	s := threat.NewMemoryStoreSize(c.Now, limit)
	banned := threat.Subject{IP: "192.0.2.1"}
	mustAdd(t, s, "set", banned, 100, policy)
	for i := range 5 * limit {
		mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("flood-%d", i)}, 1, policy)
	}
	if n := s.Len(); n > limit {
		t.Fatalf("Len = %d, over the limit %d", n, limit)
	}
	// Eviction prefers unbanned entries: a flood of new keys does not wash
	// out a ban.
	if mustBanned(t, s, "set", banned).IsZero() {
		t.Error("the ban was evicted by a flood of unbanned keys")
	}
	// The newest entries survive.
	if r := mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("flood-%d", 5*limit-1)}, 1, policy); r.Total != 2 {
		t.Errorf("newest entry lost: total %d, want 2", r.Total)
	}
}

func TestMemoryStoreConcurrentAdds(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	const workers, adds = 8, 500
	p := threat.Policy{Threshold: workers * adds, Window: time.Hour, BanFor: time.Hour}
	shared := threat.Subject{IP: "192.0.2.1", DeviceID: "shared"}
	var wg sync.WaitGroup
	bans := make(chan time.Time, workers*adds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := threat.Subject{IP: fmt.Sprintf("10.0.0.%d", w)}
			for range adds {
				r, err := s.Add(context.Background(), "set", shared, 1, p)
				if err != nil {
					t.Error(err)
					return
				}
				if !r.BannedUntil.IsZero() {
					bans <- r.BannedUntil
				}
				if _, err := s.Add(context.Background(), "set", own, 1, p); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Banned(context.Background(), "set", shared); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(bans)
	// Add is atomic: exactly the last of workers*adds increments reaches the
	// threshold, so exactly one Add reports the ban.
	if n := len(bans); n != 1 {
		t.Errorf("%d adds reported a ban, want exactly 1", n)
	}
	if r := mustAdd(t, s, "set", threat.Subject{DeviceID: "shared"}, 0, p); r.Total != workers*adds {
		t.Errorf("shared total %d, want %d: lost updates", r.Total, workers*adds)
	}
	for w := range workers {
		if r := mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("10.0.0.%d", w)}, 0, p); r.Total != adds {
			t.Errorf("worker %d total %d, want %d", w, r.Total, adds)
		}
	}
}

func TestMemoryStoreBannedDoesNotAllocate(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	ctx := context.Background()
	sub := threat.Subject{IP: "192.0.2.1", DeviceID: "d", CertSHA: "c"}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Banned(ctx, "set", sub) }); n != 0 {
		t.Errorf("Banned with no bans: %v allocs, want 0", n)
	}
	mustAdd(t, s, "set", threat.Subject{IP: "198.51.100.1"}, 1000, policy) // someone else is banned
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Banned(ctx, "set", sub) }); n != 0 {
		t.Errorf("Banned with bans held: %v allocs, want 0", n)
	}
	mustAdd(t, s, "set", sub, 1000, policy)
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Banned(ctx, "set", sub) }); n != 0 {
		t.Errorf("Banned for a banned subject: %v allocs, want 0", n)
	}
}

// Entries kept alive only by a long ban must not shield the expired entries
// scored after them from the cleanup that Add does.
func TestMemoryStoreCleanupPassesBannedEntries(t *testing.T) {
	c := newClock()
	s := threat.NewMemoryStore(c.Now)
	p := threat.Policy{Threshold: 1, Window: time.Second, BanFor: 24 * time.Hour}
	for i := range 640 { // ten per shard on average, all banned for a day
		mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("banned-%d", i)}, 1, p)
	}
	for i := range 5000 {
		mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("short-%d", i)}, 0, p)
	}
	c.Add(time.Minute)
	for i := range 5000 {
		mustAdd(t, s, "set", threat.Subject{IP: fmt.Sprintf("later-%d", i)}, 0, p)
	}
	// Without passing the banned entries, most of the 5000 expired "short"
	// entries would stay behind them.
	if n := s.Len(); n > 640+5000+500 {
		t.Errorf("Len = %d: expired entries behind banned ones were not cleaned up", n)
	}
	for i := range 640 {
		if mustBanned(t, s, "set", threat.Subject{IP: fmt.Sprintf("banned-%d", i)}).IsZero() {
			t.Fatalf("ban %d lost by cleanup", i)
		}
	}
	// A bounded Sweep makes progress without visiting everything.
	c.Add(time.Minute)
	before := s.Len()
	s.Sweep(10)
	if after := s.Len(); after >= before || before-after > 64*10 {
		t.Errorf("Sweep(10): %d -> %d entries, want some but at most 640 freed", before, after)
	}
}
