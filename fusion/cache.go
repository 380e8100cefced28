package fusion

import (
	"bytes"
	"sync"
	"time"

	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// verdict is the outcome of checking one leaf certificate against one set.
// It is shared by every request that presents the same leaf, so it is
// never modified once built.
type verdict struct {
	reason threat.Reason
	// data is the event's reasonData; events copy it.
	data map[string]any
	// cert describes the leaf; nil when the leaf could not be parsed.
	cert *threat.CertInfo
	// certSHA is the hex SHA-256 of the leaf DER ("" without a leaf).
	certSHA  string
	build    certid.BuildInfo
	hasBuild bool
	// The verdict holds only while the clock is within [validFrom,
	// validUntil] (the chain's validity) and rev is the set's current
	// revocation generation.
	validFrom, validUntil time.Time
	rev                   *revocationSet
	// rest is the rest of the chain the verdict was computed with; a hit
	// needs the same bytes, so a verdict never depends on which request
	// happened to fill the cache.
	rest [][]byte
}

// fresh reports whether a cached verdict still holds at now for set and
// the presented chain.
func (v *verdict) fresh(set *Set, chain [][]byte, now time.Time) bool {
	if v.rev != set.rev.Load() || now.Before(v.validFrom) || now.After(v.validUntil) || len(chain)-1 != len(v.rest) {
		return false
	}
	for i, der := range v.rest {
		if !bytes.Equal(der, chain[i+1]) {
			return false
		}
	}
	return true
}

// verdictCache maps leaf DER to its verdict for one set. It is bounded:
// when full, an arbitrary entry (Go's map iteration order) makes room.
type verdictCache struct {
	mu  sync.RWMutex
	m   map[string]*verdict
	max int
}

func newVerdictCache(max int) *verdictCache {
	return &verdictCache{m: make(map[string]*verdict), max: max}
}

// get looks up a leaf without allocating (the string(der) conversion in a
// map index does not copy).
func (c *verdictCache) get(der []byte) *verdict {
	c.mu.RLock()
	v := c.m[string(der)]
	c.mu.RUnlock()
	return v
}

func (c *verdictCache) put(der []byte, v *verdict) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	if _, ok := c.m[string(der)]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[string(der)] = v
	c.mu.Unlock()
}

func (c *verdictCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
