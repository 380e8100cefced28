package redisstore

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// waitFor bounds polling loops: long enough for a loaded 2-core machine.
const waitFor = 20 * time.Second

// testOptions are roomier than the defaults: CI machines are shared and a
// 50 ms read timeout can fire under load without Redis being down.
func testOptions() Options {
	return Options{DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
}

func newStore(t *testing.T, url string, o Options) *Store {
	t.Helper()
	s, err := New(context.Background(), url, o)
	if err != nil {
		t.Fatalf("New(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var policy = threat.Policy{Threshold: 30, Window: time.Minute, BanFor: time.Minute}

func TestThresholdBansAcrossGateways(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	caddy := newStore(t, srv.URL(), testOptions())
	envoy := newStore(t, srv.URL(), testOptions())
	sub := threat.Subject{IP: "203.0.113.7", DeviceID: "dev-1", CertSHA: "ab12"}

	for i, want := range []int{10, 20} {
		res, err := caddy.Add(ctx, "bank", sub, 10, policy)
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
		if res.Total != want || !res.BannedUntil.IsZero() {
			t.Fatalf("Add %d = %+v, want total %d and no ban", i, res, want)
		}
	}
	if until, err := envoy.Banned(ctx, "bank", sub); err != nil || !until.IsZero() {
		t.Fatalf("Banned before threshold = %v, %v; want zero", until, err)
	}

	before := time.Now()
	res, err := envoy.Add(ctx, "bank", sub, 10, policy)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 30 {
		t.Fatalf("Total = %d, want 30 (the other gateway's scores count)", res.Total)
	}
	if res.BannedUntil.Before(before.Add(policy.BanFor-5*time.Second)) || res.BannedUntil.After(time.Now().Add(policy.BanFor)) {
		t.Fatalf("BannedUntil = %v, want about %v from now", res.BannedUntil, policy.BanFor)
	}

	// The other gateway sees the ban in its very first call, for each part of
	// the subject alone: rotating the certificate or the IP does not help.
	for _, s := range []threat.Subject{sub, {IP: sub.IP}, {DeviceID: sub.DeviceID}, {CertSHA: sub.CertSHA, IP: "198.51.100.1"}} {
		until, err := caddy.Banned(ctx, "bank", s)
		if err != nil {
			t.Fatal(err)
		}
		if d := until.Sub(res.BannedUntil); d < -time.Second || d > time.Second {
			t.Errorf("Banned(%+v) = %v, want about %v", s, until, res.BannedUntil)
		}
	}
	if until, _ := caddy.Banned(ctx, "bank", threat.Subject{IP: "198.51.100.1"}); !until.IsZero() {
		t.Errorf("an unrelated IP is banned until %v", until)
	}

	// A live ban is not extended by more failures.
	again, err := caddy.Add(ctx, "bank", sub, 10, policy)
	if err != nil {
		t.Fatal(err)
	}
	if again.Total != 40 || again.BannedUntil.After(res.BannedUntil.Add(time.Second)) {
		t.Errorf("Add during ban = %+v, want total 40 and the ban unchanged (%v)", again, res.BannedUntil)
	}
}

func TestKeyLayout(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	st := newStore(t, srv.URL(), testOptions())
	rc := rawClient(t, srv)
	long := strings.Repeat("x", MaxKeyValue+1)
	sub := threat.Subject{IP: "2001:db8::1", DeviceID: long, CertSHA: "c0ffee"}
	if _, err := st.Add(ctx, "bank-prod", sub, 30, policy); err != nil {
		t.Fatal(err)
	}
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"mcc:{bank-prod}:score:ip:2001:db8::1":        true,
		"mcc:{bank-prod}:ban:ip:2001:db8::1":          true,
		"mcc:{bank-prod}:score:cert:c0ffee":           true,
		"mcc:{bank-prod}:ban:cert:c0ffee":             true,
		"mcc:{bank-prod}:score:dev:" + keyValue(long): true,
		"mcc:{bank-prod}:ban:dev:" + keyValue(long):   true,
	}
	if len(keys) != len(want) {
		t.Fatalf("keys = %q, want %d keys", keys, len(want))
	}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		ttl, err := rc.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > time.Minute {
			t.Errorf("PTTL(%s) = %v, want within the window/ban of 1m", k, ttl)
		}
	}
	if !strings.HasPrefix(keyValue(long), "sha256:") || len(keyValue(long)) != len("sha256:")+64 {
		t.Errorf("keyValue(long) = %q, want a sha256 digest", keyValue(long))
	}
	if v, _ := rc.Get(ctx, "mcc:{bank-prod}:score:cert:c0ffee").Result(); v != "30" {
		t.Errorf("score = %q, want 30", v)
	}
}

func TestBanAndWindowExpire(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	st := newStore(t, srv.URL(), testOptions())
	// Short real durations; 2 s rather than 1 s leaves room for a stalled
	// machine between the Add and the first Banned.
	p := threat.Policy{Threshold: 10, Window: 2 * time.Second, BanFor: 2 * time.Second}
	sub := threat.Subject{IP: "192.0.2.1"}

	res, err := st.Add(ctx, "s", sub, 10, p)
	if err != nil || res.BannedUntil.IsZero() {
		t.Fatalf("Add = %+v, %v; want a ban", res, err)
	}
	if until, err := st.Banned(ctx, "s", sub); err != nil || until.IsZero() {
		t.Fatalf("Banned right after the ban = %v, %v", until, err)
	}
	deadline := time.Now().Add(waitFor)
	for {
		until, err := st.Banned(ctx, "s", sub)
		if err != nil {
			t.Fatal(err)
		}
		if until.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ban of 2s still active after %v (until %v)", waitFor, until)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The window has ended too (it is as long as the ban and started
	// first), so scoring starts over.
	for {
		res, err := st.Add(ctx, "s", sub, 1, p)
		if err != nil {
			t.Fatal(err)
		}
		if res.Total == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("window of 2s still counting after %v (total %d)", waitFor, res.Total)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNamespacesIsolated(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	st := newStore(t, srv.URL(), testOptions())
	sub := threat.Subject{IP: "192.0.2.9", CertSHA: "aa"}
	if res, err := st.Add(ctx, "a", sub, 30, policy); err != nil || res.BannedUntil.IsZero() {
		t.Fatalf("Add in a = %+v, %v; want a ban", res, err)
	}
	if until, err := st.Banned(ctx, "b", sub); err != nil || !until.IsZero() {
		t.Fatalf("Banned in b = %v, %v; want zero", until, err)
	}
	res, err := st.Add(ctx, "b", sub, 5, policy)
	if err != nil || res.Total != 5 || !res.BannedUntil.IsZero() {
		t.Fatalf("Add in b = %+v, %v; want total 5, no ban", res, err)
	}
	// A set id that looks like a prefix of another must not share keys.
	if res, err := st.Add(ctx, "a}:score:ip:192.0.2.9", threat.Subject{IP: "x"}, 1, policy); err != nil || res.Total != 1 {
		t.Fatalf("Add in a crafted namespace = %+v, %v; want total 1", res, err)
	}
}

// TestConcurrentAddsAreAtomic has two gateways add to the same key at once:
// each Add must see a distinct running total, and the sum must be exact.
func TestConcurrentAddsAreAtomic(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	stores := []*Store{newStore(t, srv.URL(), testOptions()), newStore(t, srv.URL(), testOptions())}
	const workers, adds = 8, 100
	total := len(stores) * workers * adds
	p := threat.Policy{Threshold: total / 2, Window: time.Minute, BanFor: time.Minute}
	sub := threat.Subject{IP: "192.0.2.77"}

	var (
		mu      sync.Mutex
		seen    = make(map[int]int)
		bansNew int
		errs    []error
		wg      sync.WaitGroup
	)
	for _, st := range stores {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range adds {
					res, err := st.Add(ctx, "atomic", sub, 1, p)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						seen[res.Total]++
						if res.Total == p.Threshold && !res.BannedUntil.IsZero() {
							bansNew++
						}
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d Adds failed, first: %v", len(errs), errs[0])
	}
	for n := 1; n <= total; n++ {
		if seen[n] != 1 {
			t.Fatalf("running total %d seen %d times, want exactly once", n, seen[n])
		}
	}
	if bansNew != 1 {
		t.Errorf("the Add that reached the threshold saw a ban %d times, want 1", bansNew)
	}
	res, err := stores[1].Add(ctx, "atomic", sub, 0, p)
	if err != nil || res.Total != total {
		t.Fatalf("final total = %+v, %v; want %d", res, err, total)
	}
}

// TestParityWithMemoryStore runs one sequence through both stores: a fleet
// that switches from memory to Redis must not change who gets banned.
func TestParityWithMemoryStore(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	rs := newStore(t, srv.URL(), testOptions())
	ms := threat.NewMemoryStore(nil)
	p := threat.Policy{Threshold: 50, Window: time.Minute, BanFor: time.Minute}
	steps := []struct {
		sub   threat.Subject
		delta int
	}{
		{threat.Subject{IP: "1.1.1.1"}, 10},
		{threat.Subject{IP: "1.1.1.1", DeviceID: "d"}, 20},
		{threat.Subject{IP: "1.1.1.1"}, -40}, // clamps at zero
		{threat.Subject{DeviceID: "d"}, 25},
		{threat.Subject{DeviceID: "d", CertSHA: "c"}, 0}, // zero never bans
		{threat.Subject{DeviceID: "d", CertSHA: "c"}, 5}, // d reaches 50
		{threat.Subject{CertSHA: "c"}, 60},
		{threat.Subject{}, 10},
	}
	for i, st := range steps {
		want, err := ms.Add(ctx, "p", st.sub, st.delta, p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rs.Add(ctx, "p", st.sub, st.delta, p)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Total != want.Total || got.BannedUntil.IsZero() != want.BannedUntil.IsZero() {
			t.Errorf("step %d (%+v %+d): redis %+v, memory %+v", i, st.sub, st.delta, got, want)
		}
		for _, s := range []threat.Subject{st.sub, {IP: "1.1.1.1"}, {DeviceID: "d"}, {CertSHA: "c"}} {
			wb, _ := ms.Banned(ctx, "p", s)
			gb, err := rs.Banned(ctx, "p", s)
			if err != nil {
				t.Fatal(err)
			}
			if gb.IsZero() != wb.IsZero() {
				t.Errorf("step %d: Banned(%+v): redis %v, memory %v", i, s, gb, wb)
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	if reply, err := srv.Do("CONFIG", "SET", "requirepass", "s3cret-pw"); err != nil || reply != "+OK" {
		t.Fatalf("CONFIG SET requirepass = %q, %v", reply, err)
	}
	for _, tc := range []struct{ name, url, want string }{
		{"wrong password", "redis://:wrong-pw@" + srv.Addr() + "/0", "WRONGPASS"},
		{"no password", "redis://" + srv.Addr() + "/0", "NOAUTH"},
		{"bad scheme", "http://" + srv.Addr(), "scheme"},
		{"bad url", "redis://:pw-in-url@[::1", "invalid URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(ctx, tc.url, testOptions())
			if err == nil {
				_ = s.Close()
				t.Fatalf("New(%s) succeeded", tc.url)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
	st := newStore(t, "redis://:s3cret-pw@"+srv.Addr()+"/3", testOptions())
	if _, err := st.Add(ctx, "n", threat.Subject{IP: "x"}, 1, policy); err != nil {
		t.Fatalf("Add with the right password: %v", err)
	}
	if !st.Stats().Up {
		t.Error("Stats().Up = false with a working server")
	}
}

// TestStartsWhileRedisDown: a gateway whose Redis is down still starts; its
// store refuses at once and picks Redis up when it appears.
func TestStartsWhileRedisDown(t *testing.T) {
	srv := redistest.New(t)
	srv.Stop()
	ctx := context.Background()
	o := testOptions()
	o.Cooldown = 50 * time.Millisecond
	st := newStore(t, srv.URL(), o)
	if s := st.Stats(); s.Up || s.Trips != 1 {
		t.Fatalf("Stats = %+v, want down with one trip", s)
	}
	// The engine reads the breaker through threat.HealthReporter.
	var h threat.HealthReporter = st
	if !h.Degraded() {
		t.Fatal("Degraded() = false while the breaker is open")
	}
	if _, err := st.Banned(ctx, "n", threat.Subject{IP: "x"}); err != ErrUnavailable {
		t.Fatalf("Banned while down: %v, want ErrUnavailable", err)
	}
	srv.Start()
	waitUp(t, st)
	if h.Degraded() {
		t.Fatal("Degraded() = true once Redis is back")
	}
	if _, err := st.Add(ctx, "n", threat.Subject{IP: "x"}, 1, policy); err != nil {
		t.Fatalf("Add after Redis came up: %v", err)
	}
}

func waitUp(t *testing.T, st *Store) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !st.Stats().Up {
		if time.Now().After(deadline) {
			t.Fatalf("store still down %v after Redis came back: %+v", waitFor, st.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEmptySubjectNeedsNoRedis(t *testing.T) {
	srv := redistest.New(t)
	st := newStore(t, srv.URL(), testOptions())
	srv.Stop()
	if res, err := st.Add(context.Background(), "n", threat.Subject{}, 10, policy); err != nil || res != (threat.Result{}) {
		t.Fatalf("Add(empty subject) = %+v, %v", res, err)
	}
	if until, err := st.Banned(context.Background(), "n", threat.Subject{}); err != nil || !until.IsZero() {
		t.Fatalf("Banned(empty subject) = %v, %v", until, err)
	}
}

func TestTLS(t *testing.T) {
	srv := redistest.NewTLS(t)
	ctx := context.Background()
	o := testOptions()
	o.TLSConfig = srv.TLSConfig()
	o.TLSConfig.ServerName = "" // taken from the URL
	st := newStore(t, srv.URL(), o)
	if res, err := st.Add(ctx, "tls", threat.Subject{IP: "192.0.2.5"}, 30, policy); err != nil || res.BannedUntil.IsZero() {
		t.Fatalf("Add over TLS = %+v, %v", res, err)
	}

	// Without the CA, the certificate does not verify: a configuration
	// mistake, not an outage to wait out.
	if s, err := New(ctx, srv.URL(), testOptions()); err == nil {
		_ = s.Close()
		t.Fatal("New trusted a certificate from an unknown CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %q does not say the certificate is the problem", err)
	}
}
