package fusion

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
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
// when full, an arbitrary entry makes room.
//
// Every request of a client whose certificate was seen before is a lookup,
// so lookups take no lock and write no shared memory: they read an
// immutable map (read) whose entries hold their verdict in an atomic
// pointer. New leaves go to a mutex-protected map (dirty) that is merged
// into a new read map once the locked operations since the last merge
// pay for copying it. A replaced verdict (a stale one recomputed) is
// stored into its entry in place.
type verdictCache struct {
	read atomic.Pointer[map[string]*cacheEntry]
	// pending is len(dirty), so that a lookup that misses read skips the
	// lock when nothing waits to be merged.
	pending atomic.Int64

	mu    sync.Mutex
	dirty map[string]*cacheEntry // keys not in read
	// evicted counts read entries whose verdict was dropped to make room;
	// the next merge leaves them out.
	evicted int
	// locked counts the operations that took mu since the last merge.
	locked int
	max    int
}

type cacheEntry struct {
	v atomic.Pointer[verdict]
}

// mergeFloor keeps a small cache from merging on every locked operation.
const mergeFloor = 16

func newVerdictCache(max int) *verdictCache {
	c := &verdictCache{dirty: make(map[string]*cacheEntry), max: max}
	c.read.Store(new(map[string]*cacheEntry))
	return c
}

// get looks up a leaf without allocating (the string(der) conversion in a
// map index does not copy).
func (c *verdictCache) get(der []byte) *verdict {
	if e := (*c.read.Load())[string(der)]; e != nil {
		return e.v.Load()
	}
	if c.pending.Load() == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A merge may have moved the key to read since the lookup above.
	e := (*c.read.Load())[string(der)]
	if e == nil {
		e = c.dirty[string(der)]
	}
	c.countLocked()
	if e == nil {
		return nil
	}
	return e.v.Load()
}

func (c *verdictCache) put(der []byte, v *verdict) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := (*c.read.Load())[string(der)]; e != nil {
		if e.v.Swap(v) == nil {
			// Back from eviction: it counts again.
			c.evicted--
			c.makeRoom(e)
		}
		return
	}
	if e := c.dirty[string(der)]; e != nil {
		e.v.Store(v)
		return
	}
	e := new(cacheEntry)
	e.v.Store(v)
	c.makeRoom(nil)
	c.dirty[string(der)] = e
	c.pending.Store(int64(len(c.dirty)))
	c.countLocked()
}

// makeRoom drops an arbitrary entry other than keep (Go's map iteration
// order) while the cache is at its bound. c.mu is held.
func (c *verdictCache) makeRoom(keep *cacheEntry) {
	for c.lenLocked() >= c.max+btoi(keep != nil) {
		dropped := false
		for k, e := range c.dirty {
			if e != keep {
				delete(c.dirty, k)
				c.pending.Store(int64(len(c.dirty)))
				dropped = true
				break
			}
		}
		if !dropped {
			for _, e := range *c.read.Load() {
				if e != keep && e.v.Load() != nil {
					e.v.Store(nil)
					c.evicted++
					dropped = true
					break
				}
			}
		}
		if !dropped {
			return
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// countLocked counts one locked operation and merges dirty into a new read
// map once the locked operations since the last merge reach a quarter of
// the entries: the copy then costs a few map inserts per operation.
func (c *verdictCache) countLocked() {
	c.locked++
	read := *c.read.Load()
	if c.locked < mergeFloor+len(read)/4 || (len(c.dirty) == 0 && c.evicted == 0) {
		return
	}
	m := make(map[string]*cacheEntry, len(read)-c.evicted+len(c.dirty))
	for k, e := range read {
		if e.v.Load() != nil {
			m[k] = e
		}
	}
	for k, e := range c.dirty {
		m[k] = e
	}
	c.read.Store(&m)
	clear(c.dirty)
	c.pending.Store(0)
	c.evicted, c.locked = 0, 0
}

func (c *verdictCache) lenLocked() int {
	return len(*c.read.Load()) - c.evicted + len(c.dirty)
}

func (c *verdictCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lenLocked()
}

// hitCounter counts cache hits. Every cached request adds one, from every
// core at once, so the count is spread over cache-line-sized shards picked
// at random: one shared word would bounce between the cores' caches.
type hitCounter struct {
	shards [hitShards]struct {
		n atomic.Uint64
		_ [56]byte // keeps each shard on its own 64-byte cache line
	}
}

const hitShards = 8

func (c *hitCounter) add() {
	c.shards[rand.Uint32()%hitShards].n.Add(1)
}

func (c *hitCounter) load() uint64 {
	var n uint64
	for i := range c.shards {
		n += c.shards[i].n.Load()
	}
	return n
}
