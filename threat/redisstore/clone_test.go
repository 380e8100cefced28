package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// roundTrips counts the commands and pipelines a client sends: each is one
// round trip to Redis.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

var reCmdstat = regexp.MustCompile(`(?m)^cmdstat_([a-z|]+):calls=(\d+)`)

// commandCalls reads INFO commandstats: calls per command, commands run by
// scripts included.
func commandCalls(t testing.TB, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range reCmdstat.FindAllStringSubmatch(info, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// TestCloneCountingOneRoundTrip replays one certificate from 45 addresses
// (each twice, alternating two gateways on one Redis): the use that reaches
// max_addresses is reported once across both gateways, again when the count
// doubles, and every call is one EVALSHA: a round trip on the client's hook
// and on the server's own command statistics, the same as a ban check
// without clone detection.
func TestCloneCountingOneRoundTrip(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	raw := rawClient(t, srv)
	// A fixed hashing key makes the HyperLogLog's counts repeatable.
	if err := raw.Set(ctx, cloneHashKey("bank"), "test-clone-key", 0).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	opts := testOptions()
	opts.Now = func() time.Time { return now }
	gws := []*Store{newStore(t, srv.URL(), opts), newStore(t, srv.URL(), opts)}
	var trips roundTrips
	for _, g := range gws {
		g.client.AddHook(&trips)
	}
	p := threat.ClonePolicy{Window: time.Hour, MaxAddresses: 10, MaxDevices: 1000}
	before := commandCalls(t, raw)
	calls := 0
	var reports []int
	var last threat.CloneResult
	for i := range 45 {
		addr := fmt.Sprintf("198.51.100.%d", i+1)
		for j := range 2 {
			until, res, err := gws[(i+j)%2].BannedCounting(ctx, "bank", threat.Subject{IP: addr, DeviceID: "d"}, threat.CertUse{CertSHA: "c1", Address: addr, DeviceID: fmt.Sprint("d", i%7)}, p)
			calls++
			if err != nil || !until.IsZero() {
				t.Fatalf("%v %v", until, err)
			}
			if res.Report {
				reports = append(reports, res.Addresses)
				if want := []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"}; !slices.Equal(res.Sample, want) {
					t.Errorf("sample %v, want %v", res.Sample, want)
				}
			}
			last = res
		}
	}
	after := commandCalls(t, raw)
	if !slices.Equal(reports, []int{10, 20, 40}) {
		t.Errorf("reported at %v addresses, want at 10, 20 and 40 (once across both gateways)", reports)
	}
	if last.Addresses != 45 || last.Devices != 7 {
		t.Errorf("counts: %d addresses, %d devices; want 45 and 7", last.Addresses, last.Devices)
	}
	if !last.WindowStart.Equal(p.WindowStart(now)) {
		t.Errorf("window start %v", last.WindowStart)
	}
	if got := trips.n.Load(); got != int64(calls) {
		t.Errorf("%d round trips for %d calls", got, calls)
	}
	if d := after["evalsha"] - before["evalsha"]; d != calls {
		t.Errorf("Redis ran EVALSHA %d times for %d calls", d, calls)
	}
	if d := after["eval"] - before["eval"]; d != 0 {
		t.Errorf("Redis ran EVAL %d times: the script was not cached", d)
	}
	t.Logf("per call: 1 round trip; inside the script: %d PFADD, %d PFCOUNT over %d calls",
		after["pfadd"]-before["pfadd"], after["pfcount"]-before["pfcount"], calls)

	// Without clone detection the same call is the plain ban check: one
	// EVALSHA too.
	before = commandCalls(t, raw)
	trips.n.Store(0)
	if _, res, err := gws[0].BannedCounting(ctx, "bank", threat.Subject{IP: "192.0.2.1"}, threat.CertUse{CertSHA: "c1", Address: "192.0.2.1"}, threat.ClonePolicy{}); err != nil || res.Addresses != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	after = commandCalls(t, raw)
	if trips.n.Load() != 1 || after["evalsha"]-before["evalsha"] != 1 || after["pfadd"] != before["pfadd"] {
		t.Errorf("ban check without clone detection: %d round trips, %d EVALSHA, %d PFADD", trips.n.Load(), after["evalsha"]-before["evalsha"], after["pfadd"]-before["pfadd"])
	}
}

// TestCloneParityWithMemoryStore: the same uses through the memory store
// and the Redis store give the same counts and the same reports (the Lua
// level function is threat.ClonePolicy.Levels).
func TestCloneParityWithMemoryStore(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	if err := rawClient(t, srv).Set(ctx, cloneHashKey("s"), "test-clone-key", 0).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	opts := testOptions()
	opts.Now = clock
	stores := map[string]threat.CloneCounter{"redis": newStore(t, srv.URL(), opts), "memory": threat.NewMemoryStore(clock)}
	p := threat.ClonePolicy{Window: 10 * time.Minute, MaxAddresses: 6, MaxDevices: 3}
	type step struct{ addrs, devs int }
	got := map[string][]step{}
	for name, st := range stores {
		for i := range 40 {
			use := threat.CertUse{CertSHA: "cert", Address: fmt.Sprintf("2001:db8:%x::/64", i%30), DeviceID: fmt.Sprint("dev-", i%13)}
			_, res, err := st.BannedCounting(ctx, "s", threat.Subject{}, use, p)
			if err != nil {
				t.Fatal(err)
			}
			if res.Report {
				got[name] = append(got[name], step{res.Addresses, res.Devices})
			}
		}
	}
	if !slices.Equal(got["redis"], got["memory"]) || len(got["memory"]) == 0 {
		t.Errorf("reports (addresses, devices):\nredis  %v\nmemory %v", got["redis"], got["memory"])
	}
}

// TestCloneKeysExpireAndShareHashingKey: every clone key expires by the
// end of its window, and two gateways that start with different candidate
// hashing keys use the first one stored, so one device counts once.
func TestCloneKeysExpireAndShareHashingKey(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	raw := rawClient(t, srv)
	now := time.Date(2026, 3, 1, 10, 59, 0, 0, time.UTC)
	opts := testOptions()
	opts.Now = func() time.Time { return now }
	a, b := newStore(t, srv.URL(), opts), newStore(t, srv.URL(), opts)
	if a.hashKey == b.hashKey {
		t.Fatal("two stores drew the same candidate key")
	}
	p := threat.ClonePolicy{Window: time.Hour, MaxDevices: 100}
	use := threat.CertUse{CertSHA: "c", Address: "192.0.2.1", DeviceID: "dev-1"}
	if _, _, err := a.BannedCounting(ctx, "s", threat.Subject{}, use, p); err != nil {
		t.Fatal(err)
	}
	_, res, err := b.BannedCounting(ctx, "s", threat.Subject{}, use, p)
	if err != nil || res.Devices != 1 || res.Addresses != 1 {
		t.Fatalf("second gateway: %+v %v, want the device and address counted once", res, err)
	}
	if k, _ := raw.Get(ctx, cloneHashKey("s")).Result(); k != a.hashKey {
		t.Errorf("hashing key %q, want the first gateway's", k)
	}
	keys := cloneKeys("s", p.WindowStart(now), "c")
	for _, k := range keys[:4] {
		if k == keys[2] {
			continue // written only by a report
		}
		ttl, err := raw.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Minute {
			t.Errorf("%s: PTTL %v %v, want at most the minute left in the window", k, ttl, err)
		}
	}
	// The sample keeps the address itself, for the event.
	members, _ := raw.LRange(ctx, keys[3], 0, -1).Result()
	if !slices.Equal(members, []string{"192.0.2.1"}) {
		t.Errorf("sample %v", members)
	}
}

// TestCloneCountingOutage: with Redis gone, BannedCounting fails fast with
// the breaker like every call, so the engine counts in its fallback.
func TestCloneCountingOutage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	st := newStore(t, "redis://"+addr, testOptions())
	_, _, err = st.BannedCounting(context.Background(), "s", threat.Subject{}, threat.CertUse{CertSHA: "c", Address: "a"}, threat.ClonePolicy{MaxAddresses: 1})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("counting against no Redis: %v, want ErrUnavailable at once", err)
	}
}

// BenchmarkCloneRoundTrips is the Redis store's request path with clone
// detection off (the ban check) and on (the ban check and the count in one
// script): round trips per request from the client's hook, EVALSHA per
// request from Redis's own statistics, and the time of a round trip on
// loopback. Budget: on adds no round trip.
func BenchmarkCloneRoundTrips(b *testing.B) {
	srv := redistest.New(b)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("on=%v", on), func(b *testing.B) {
			st, err := New(ctx, srv.URL(), testOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var trips roundTrips
			st.client.AddHook(&trips)
			p := threat.ClonePolicy{MaxAddresses: 1 << 20, MaxDevices: 1 << 20}
			if !on {
				p = threat.ClonePolicy{}
			}
			before := commandCalls(b, raw)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				addr := fmt.Sprintf("10.0.%d.%d", i>>8&255, i&255)
				i++
				if _, _, err := st.BannedCounting(ctx, "bench", threat.Subject{IP: addr, DeviceID: "d"}, threat.CertUse{CertSHA: "c", Address: addr, DeviceID: "d"}, p); err != nil {
					b.Fatal(err)
				}
			}
			after := commandCalls(b, raw)
			b.ReportMetric(float64(trips.n.Load())/float64(i), "roundtrips/op")
			b.ReportMetric(float64(after["evalsha"]-before["evalsha"])/float64(i), "evalsha/op")
		})
	}
}
