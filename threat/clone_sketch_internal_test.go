package threat

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

// TestCloneSketchExactThenEstimate: a sketch counts exactly up to
// sketchExact distinct hashes, ignores repeats, and estimates within the
// HyperLogLog's error beyond (3.5 standard errors of 6.5 %, with a fixed
// random sequence so the test cannot flake).
func TestCloneSketchExactThenEstimate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s cloneSketch
	seen := map[uint32]bool{}
	for _, n := range []int{1, 2, 10, sketchExact, sketchExact + 1, 100, 300, 1000, 10_000, 100_000} {
		for len(seen) < n {
			h := rng.Uint32()
			if seen[h] {
				continue
			}
			seen[h] = true
			s.add(h)
			s.add(h) // a repeat never counts
		}
		got := s.count()
		if n <= sketchExact {
			if got != n || s.hll != nil {
				t.Fatalf("%d distinct: count %d (hll %v), want exactly %d", n, got, s.hll != nil, n)
			}
			continue
		}
		if s.exact != nil {
			t.Fatalf("%d distinct: still listing %d hashes", n, len(s.exact))
		}
		if err := float64(got-n) / float64(n); err < -0.23 || err > 0.23 {
			t.Errorf("%d distinct: estimate %d (%.1f%% off)", n, got, 100*err)
		}
		t.Logf("%d distinct: estimate %d", n, got)
	}
	s.reset()
	if s.count() != 0 || s.hll != nil {
		t.Fatalf("after reset: count %d", s.count())
	}
}

// TestCloneSketchRepeatsDoNotMove: once dense, adding the same hashes again
// changes nothing (a returning client never moves the count).
func TestCloneSketchRepeatsDoNotMove(t *testing.T) {
	var s cloneSketch
	hs := make([]uint32, 500)
	for i := range hs {
		hs[i] = uint32(i) * 2654435761
		s.add(hs[i])
	}
	before := s.count()
	for _, h := range hs {
		if s.add(h) {
			t.Fatalf("re-adding %x changed the sketch", h)
		}
	}
	if s.count() != before {
		t.Fatalf("count moved from %d to %d on repeats", before, s.count())
	}
}

// TestCloneSketchRankCap: a hash whose 24 rank bits are all zero gets the
// highest rank, not an overflow.
func TestCloneSketchRankCap(t *testing.T) {
	h := &hllState{sum: hllRegisters, zeros: hllRegisters}
	h.add(0x07_000000)
	if h.reg[7] != hllRankMax {
		t.Fatalf("rank %d, want %d", h.reg[7], hllRankMax)
	}
	h.add(0x07_800000)
	if h.reg[7] != hllRankMax {
		t.Fatal("a lower rank replaced a higher one")
	}
}

// TestCloneSketchMemory is the figure the docs give: a sketch's dense half
// and its list are about 256 bytes each.
func TestCloneSketchMemory(t *testing.T) {
	if sz := unsafe.Sizeof(hllState{}); sz > 280 {
		t.Errorf("hllState is %d bytes", sz)
	}
	if sketchExact*4 > hllRegisters+16 {
		t.Errorf("the exact list (%d bytes) outweighs the dense sketch", sketchExact*4)
	}
	if sz := unsafe.Sizeof(cloneEntry{}); sz > 256 {
		t.Errorf("cloneEntry is %d bytes without its sketches", sz)
	}
}

// TestCloneTableBounded: the table never holds more entries than its
// limit, and eviction prefers entries whose window is over.
func TestCloneTableBounded(t *testing.T) {
	tab := newCloneTable(cloneShards * 4)
	p := ClonePolicy{Window: time.Minute, MaxAddresses: 10}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := range 1000 {
		tab.count("s", CertUse{CertSHA: fmt.Sprintf("cert-%d", i), Address: "192.0.2.1"}, p, now)
	}
	if n := tab.len(); n > cloneShards*4 {
		t.Fatalf("%d entries, limit %d", n, cloneShards*4)
	}
	later := now + int64(2*time.Minute)
	tab.sweep(later, 0)
	if n := tab.len(); n != 0 {
		t.Fatalf("%d entries after sweeping past their window", n)
	}
}
