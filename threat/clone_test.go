package threat_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccgate/mcc/threat"
)

// TestCloneLevels is the report rule both stores apply.
func TestCloneLevels(t *testing.T) {
	p := threat.ClonePolicy{MaxAddresses: 50, MaxDevices: 20}
	for _, c := range []struct{ addrs, devs, wantA, wantD int }{
		{0, 0, 0, 0}, {49, 19, 0, 0}, {50, 20, 1, 1}, {99, 39, 1, 1}, {100, 40, 2, 2},
		{199, 79, 2, 2}, {200, 80, 3, 3}, {1 << 20, 0, 15, 0},
	} {
		a, d := p.Levels(c.addrs, c.devs)
		if a != c.wantA || d != c.wantD {
			t.Errorf("Levels(%d, %d) = %d, %d; want %d, %d", c.addrs, c.devs, a, d, c.wantA, c.wantD)
		}
	}
	if a, d := (threat.ClonePolicy{}).Levels(1000, 1000); a != 0 || d != 0 {
		t.Errorf("an off policy reports levels %d, %d", a, d)
	}
	if (threat.ClonePolicy{}).Enabled() || !(threat.ClonePolicy{MaxDevices: 1}).Enabled() {
		t.Error("Enabled")
	}
}

// TestMemoryStoreCloneReportsOncePerLevel replays one certificate from many
// addresses: the use that reaches max_addresses is reported, the ones after
// it are not until the count doubles, and a returning address never counts
// twice.
func TestMemoryStoreCloneReportsOncePerLevel(t *testing.T) {
	clock := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := threat.NewMemoryStore(func() time.Time { return clock })
	p := threat.ClonePolicy{Window: time.Hour, MaxAddresses: 10, MaxDevices: 100}
	ctx := context.Background()
	var reports []int
	var last threat.CloneResult
	for i := range 45 {
		addr := fmt.Sprintf("198.51.100.%d", i+1)
		for range 2 { // every client comes back
			until, res, err := s.BannedCounting(ctx, "set", threat.Subject{IP: addr}, threat.CertUse{CertSHA: "c1", Address: addr, DeviceID: "d1"}, p)
			if err != nil || !until.IsZero() {
				t.Fatalf("%v %v", until, err)
			}
			if res.Report {
				reports = append(reports, res.Addresses)
				if len(res.Sample) == 0 || len(res.Sample) > threat.CloneSampleSize {
					t.Errorf("sample %v", res.Sample)
				}
			}
			last = res
		}
	}
	if !slices.Equal(reports, []int{10, 20, 40}) {
		t.Errorf("reported at %v distinct addresses, want at 10, 20 and 40", reports)
	}
	if last.Addresses != 45 || last.Devices != 1 {
		t.Errorf("counts %d addresses %d devices, want 45 and 1", last.Addresses, last.Devices)
	}
	if want := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC); !last.WindowStart.Equal(want) {
		t.Errorf("window start %v, want %v", last.WindowStart, want)
	}

	// The sample is the first addresses of the window.
	_, res, _ := s.BannedCounting(ctx, "set", threat.Subject{}, threat.CertUse{CertSHA: "c2", Address: "a"}, threat.ClonePolicy{MaxAddresses: 1})
	if !res.Report || !slices.Equal(res.Sample, []string{"a"}) {
		t.Errorf("first use at max_addresses 1: %+v", res)
	}

	// A new window starts over: same addresses, reported again at 10.
	clock = clock.Add(time.Hour)
	reports = nil
	for i := range 12 {
		addr := fmt.Sprintf("198.51.100.%d", i+1)
		_, res, _ := s.BannedCounting(ctx, "set", threat.Subject{}, threat.CertUse{CertSHA: "c1", Address: addr}, p)
		if res.Report {
			reports = append(reports, res.Addresses)
			if !slices.Equal(res.Sample, []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"}) {
				t.Errorf("sample %v, want the window's first five addresses", res.Sample)
			}
		}
	}
	if !slices.Equal(reports, []int{10}) {
		t.Errorf("next window reported at %v, want at 10", reports)
	}
}

// TestMemoryStoreCloneDevices: device ids count on their own threshold,
// sets and certificates are counted apart, and an empty use counts nothing.
func TestMemoryStoreCloneDevices(t *testing.T) {
	s := threat.NewMemoryStore(nil)
	p := threat.ClonePolicy{MaxAddresses: 1000, MaxDevices: 3}
	ctx := context.Background()
	reported := 0
	for i := range 5 {
		_, res, _ := s.BannedCounting(ctx, "a", threat.Subject{}, threat.CertUse{CertSHA: "c", Address: "192.0.2.1", DeviceID: fmt.Sprint("dev-", i)}, p)
		if res.Report {
			reported++
			if res.Devices != 3 || res.Addresses != 1 {
				t.Errorf("reported with %d devices %d addresses, want 3 and 1", res.Devices, res.Addresses)
			}
		}
	}
	if reported != 1 {
		t.Errorf("%d reports, want 1", reported)
	}
	if _, res, _ := s.BannedCounting(ctx, "b", threat.Subject{}, threat.CertUse{CertSHA: "c", DeviceID: "dev-0"}, p); res.Devices != 1 {
		t.Errorf("another set sees %d devices, want its own 1", res.Devices)
	}
	if _, res, _ := s.BannedCounting(ctx, "a", threat.Subject{}, threat.CertUse{}, p); res.Addresses != 0 || res.Report || !res.WindowStart.IsZero() {
		t.Errorf("empty use: %+v", res)
	}
	if _, res, _ := s.BannedCounting(ctx, "a", threat.Subject{}, threat.CertUse{CertSHA: "x", Address: "a"}, threat.ClonePolicy{}); res.Addresses != 0 {
		t.Errorf("off policy counted: %+v", res)
	}
	if n := s.CloneLen(); n != 2 {
		t.Errorf("%d certificates counted, want 2 (set a and set b)", n)
	}
}

// TestMemoryStoreCloneKeepsBanCheck: BannedCounting still answers bans.
func TestMemoryStoreCloneKeepsBanCheck(t *testing.T) {
	s := threat.NewMemoryStore(nil)
	ctx := context.Background()
	pol := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: time.Minute}
	if _, err := s.Add(ctx, "s", threat.Subject{IP: "192.0.2.9"}, 10, pol); err != nil {
		t.Fatal(err)
	}
	until, res, err := s.BannedCounting(ctx, "s", threat.Subject{IP: "192.0.2.9"}, threat.CertUse{CertSHA: "c", Address: "192.0.2.9"}, threat.ClonePolicy{MaxAddresses: 1})
	if err != nil || until.IsZero() || !res.Report {
		t.Fatalf("until %v report %v err %v: want the ban and the count", until, res.Report, err)
	}
}

// BenchmarkMemoryStoreClone is the store's part of clone counting: the ban
// check alone (off) against the ban check with a use counted (on), for a
// certificate used by 1,000 returning clients (its sketches dense) and by
// 50 (still exact lists, scanned).
func BenchmarkMemoryStoreClone(b *testing.B) {
	ctx := context.Background()
	for _, clients := range []int{50, 1000} {
		uses := make([]threat.CertUse, clients)
		for i := range uses {
			uses[i] = threat.CertUse{CertSHA: "4f3c2a9b7e1d0c8f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f", Address: fmt.Sprintf("10.0.%d.%d", i>>8, i&255), DeviceID: fmt.Sprint("device-", i),
				At: time.Now()} // the engine's clock, read once per request
		}
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("clients=%d/on=%v", clients, on), func(b *testing.B) {
				s := threat.NewMemoryStore(nil)
				p := threat.ClonePolicy{MaxAddresses: 1 << 20, MaxDevices: 1 << 20}
				if !on {
					p = threat.ClonePolicy{}
				}
				for _, u := range uses {
					s.BannedCounting(ctx, "set", threat.Subject{IP: u.Address, DeviceID: u.DeviceID}, u, p)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					u := uses[i%clients]
					i++
					if _, res, _ := s.BannedCounting(ctx, "set", threat.Subject{IP: u.Address, DeviceID: u.DeviceID}, u, p); res.Report {
						b.Fatal("reported")
					}
				}
			})
		}
	}
}

// TestMemoryStoreCloneConcurrent: uses counted from many goroutines at once
// still give one report per level, and the exact count.
func TestMemoryStoreCloneConcurrent(t *testing.T) {
	s := threat.NewMemoryStore(nil)
	p := threat.ClonePolicy{MaxAddresses: 16}
	var reports atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				addr := fmt.Sprintf("192.0.2.%d", (g*40+i)%60)
				if _, res, _ := s.BannedCounting(context.Background(), "s", threat.Subject{}, threat.CertUse{CertSHA: "c", Address: addr}, p); res.Report {
					reports.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	_, res, _ := s.BannedCounting(context.Background(), "s", threat.Subject{}, threat.CertUse{CertSHA: "c", Address: "192.0.2.0"}, p)
	if res.Addresses != 60 || reports.Load() != 2 {
		t.Errorf("%d addresses, %d reports; want 60 and 2 (at 16 and 32)", res.Addresses, reports.Load())
	}
}
