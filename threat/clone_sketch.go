package threat

import (
	"math"
	"math/bits"
)

// cloneSketch counts distinct 32-bit hashes in bounded memory: exactly while
// it holds at most sketchExact of them (a plain list, at most 256 bytes),
// then as a HyperLogLog of hllRegisters one-byte registers (272 bytes with
// its running sums and estimate), whose standard error is 1.04/sqrt(256), about 6.5 %,
// and better below a few hundred (linear counting). The two halves weigh the
// same, so a sketch never holds more than about 300 bytes whatever it counts.
//
// The hashes come from a per-store random seed (maphash): a client cannot
// pick device ids or addresses that land in registers already set, which
// would let a farm of many look like a few.
type cloneSketch struct {
	exact []uint32
	hll   *hllState
}

const (
	// sketchExact is how many distinct hashes a sketch lists exactly before
	// it turns into a HyperLogLog.
	sketchExact = 64
	// hllBits index the registers: the hash's top 8 bits.
	hllBits      = 8
	hllRegisters = 1 << hllBits
	// hllRankMax is the highest rank: the 24 bits below the index, plus one.
	hllRankMax = 32 - hllBits + 1
)

// hllAlpha is the HyperLogLog bias correction for 256 registers.
var hllAlpha = 0.7213 / (1 + 1.079/hllRegisters)

// hllState is a HyperLogLog with the sum its estimate needs kept up to date,
// so that counting costs the same whether it changed a register or not.
type hllState struct {
	reg   [hllRegisters]uint8
	sum   float64 // Σ 2^-reg[j]
	zeros int     // registers still 0
	// est is the estimate, recomputed only when a register changes: most
	// uses are returning clients, and a logarithm per request would cost
	// more than all the rest of counting.
	est int
}

// add records h and reports whether the count may have changed: h was not
// listed yet, or it raised a register.
func (s *cloneSketch) add(h uint32) bool {
	if s.hll != nil {
		return s.hll.add(h)
	}
	for _, x := range s.exact {
		if x == h {
			return false
		}
	}
	if len(s.exact) < sketchExact {
		if s.exact == nil {
			s.exact = make([]uint32, 0, 8)
		}
		s.exact = append(s.exact, h)
		return true
	}
	hl := &hllState{sum: hllRegisters, zeros: hllRegisters}
	for _, x := range s.exact {
		hl.add(x)
	}
	hl.add(h)
	s.hll, s.exact = hl, nil
	return true
}

// count returns the number of distinct hashes added: exact while the list
// holds them, the HyperLogLog's estimate after, never below what the list
// proved (sketchExact+1 distinct hashes turned it).
func (s *cloneSketch) count() int {
	if s.hll == nil {
		return len(s.exact)
	}
	return max(s.hll.est, sketchExact+1)
}

// reset empties the sketch for a new window, keeping the list's memory.
func (s *cloneSketch) reset() {
	s.exact, s.hll = s.exact[:0], nil
}

func (h *hllState) add(x uint32) bool {
	j := x >> (32 - hllBits)
	// The sentinel bit below the 24 rank bits caps the rank at hllRankMax.
	rank := uint8(bits.LeadingZeros32(x<<hllBits|1<<(hllBits-1)) + 1)
	old := h.reg[j]
	if rank <= old {
		return false
	}
	if old == 0 {
		h.zeros--
	}
	h.sum += math.Ldexp(1, -int(rank)) - math.Ldexp(1, -int(old))
	h.reg[j] = rank
	h.est = h.estimate()
	return true
}

func (h *hllState) estimate() int {
	e := hllAlpha * hllRegisters * hllRegisters / h.sum
	if e <= 2.5*hllRegisters && h.zeros > 0 {
		// Linear counting: far more accurate while registers are empty.
		e = hllRegisters * math.Log(float64(hllRegisters)/float64(h.zeros))
	}
	return int(math.Round(e))
}
