package fusion

import (
	"crypto/sha256"
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
	// trusted is set once the chain verified against the set's CAs. Only
	// such verdicts are cached: anyone can mint any number of chains that
	// do not verify, but only the CA can mint chains that do.
	trusted bool
	// The verdict holds only while the clock is within [validFrom,
	// validUntil] (the chain's validity) and rev is the set's current
	// revocation generation.
	validFrom, validUntil time.Time
	rev                   *revocationSet
	// restSums are the SHA-256 hashes of the rest of the chain the verdict
	// was computed with; a hit needs the same certificates, so a verdict
	// never depends on which request happened to fill the cache. Hashes
	// and not copies: a presented chain may be 48 KiB past its leaf.
	restSums [][sha256.Size]byte
	// rest is the rest of the chain as handed in by a caller of put that
	// predates restSums; put turns it into restSums and drops it.
	rest [][]byte
}

// kind is the leaf's kind: build unless its build metadata reads as an
// install certificate's (no or unreadable metadata counts as build). A nil
// verdict (no parsed leaf) is build too.
func (v *verdict) kind() certid.Kind {
	if v == nil || !v.hasBuild {
		return certid.KindBuild
	}
	return v.build.Kind
}

// fresh reports whether a cached verdict still holds at now for set and
// the presented chain. It does not allocate.
func (v *verdict) fresh(set *Set, chain [][]byte, now time.Time) bool {
	if v.rev != set.rev.Load() || now.Before(v.validFrom) || now.After(v.validUntil) || len(chain)-1 != len(v.restSums) {
		return false
	}
	for i, sum := range v.restSums {
		if sha256.Sum256(chain[i+1]) != sum {
			return false
		}
	}
	return true
}

// DefaultCacheMaxBytes is the default byte budget of one fusion set's
// verdict cache (cache.max_bytes). A typical entry (a 1 KiB leaf and its
// description) accounts about 2.5 KiB, so the default holds several
// thousand clients.
const DefaultCacheMaxBytes = 16 << 20

// MinCacheMaxBytes and MaxCacheMaxBytes bound cache.max_bytes.
const (
	MinCacheMaxBytes = 256 << 10
	MaxCacheMaxBytes = 4 << 30
)

// entryOverhead is what an entry costs beyond its variable-length parts:
// the map slot and key header, cacheEntry, verdict and CertInfo.
const entryOverhead = 512

// verdictCache maps leaf DER to its verdict for one set. It is bounded by
// entries (max) and by accounted bytes (maxBytes): when full, entries not
// looked up since the last sweep (second chance) make room.
//
// Every request of a client whose certificate was seen before is a lookup,
// so lookups take no lock and write no shared memory (but for the first
// hit after a sweep, which sets the entry's used bit): they read an
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
	// maxBytes bounds bytes+dead. bytes is the accounted size of the live
	// entries; dead that of evicted entries still in the read map (their
	// keys are held until the next merge).
	maxBytes    int64
	bytes, dead int64
}

type cacheEntry struct {
	v atomic.Pointer[verdict]
	// used is set by a hit and cleared by an eviction sweep: an entry hit
	// since the last sweep is passed over once.
	used atomic.Bool
	// size is the entry's accounted size (mu).
	size int64
}

// mergeFloor keeps a small cache from merging on every locked operation.
const mergeFloor = 16

// newVerdictCache returns a cache of at most max entries and the default
// byte budget.
func newVerdictCache(max int) *verdictCache {
	return newVerdictCacheBytes(max, DefaultCacheMaxBytes)
}

// newSetCache returns the verdict cache for set: at most max entries and
// the set's byte budget (cache.max_bytes).
func newSetCache(set *Set, max int) *verdictCache {
	b := int64(DefaultCacheMaxBytes)
	if set != nil && set.CacheMaxBytes > 0 {
		b = set.CacheMaxBytes
	}
	return newVerdictCacheBytes(max, b)
}

func newVerdictCacheBytes(max int, maxBytes int64) *verdictCache {
	c := &verdictCache{dirty: make(map[string]*cacheEntry), max: max, maxBytes: maxBytes}
	c.read.Store(new(map[string]*cacheEntry))
	return c
}

// get looks up a leaf without allocating (the string(der) conversion in a
// map index does not copy).
func (c *verdictCache) get(der []byte) *verdict {
	if e := (*c.read.Load())[string(der)]; e != nil {
		e.touch()
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
	e.touch()
	return e.v.Load()
}

// touch marks the entry used; it writes only when the bit is clear, so
// steady hits on one entry do not bounce its cache line between cores.
func (e *cacheEntry) touch() {
	if !e.used.Load() {
		e.used.Store(true)
	}
}

// putChain caches v for the presented chain (leaf first) when v may be
// cached: only verdicts of chains that verified against the set's CAs.
func (c *verdictCache) putChain(chain [][]byte, v *verdict) {
	if len(chain) == 0 || !v.trusted || c.max <= 0 || c.maxBytes <= 0 {
		return
	}
	v.restSums = make([][sha256.Size]byte, len(chain)-1)
	for i, der := range chain[1:] {
		v.restSums[i] = sha256.Sum256(der)
	}
	v.rest = nil
	c.insert(chain[0], v)
}

// put caches v for the leaf der, the rest of the chain being v.rest.
func (c *verdictCache) put(der []byte, v *verdict) {
	if !v.trusted || c.max <= 0 || c.maxBytes <= 0 {
		return
	}
	if v.rest != nil {
		v.restSums = make([][sha256.Size]byte, len(v.rest))
		for i, r := range v.rest {
			v.restSums[i] = sha256.Sum256(r)
		}
		v.rest = nil
	}
	c.insert(der, v)
}

func (c *verdictCache) insert(der []byte, v *verdict) {
	size := entrySize(der, v)
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := (*c.read.Load())[string(der)]
	if e == nil {
		e = c.dirty[string(der)]
	}
	if e != nil {
		// In place: first account the new size, then make room for it
		// without dropping this entry.
		if e.v.Swap(v) == nil {
			// Back from eviction: it counts again.
			c.evicted--
			c.dead -= e.size
		} else {
			c.bytes -= e.size
		}
		e.size = size
		c.bytes += size
		c.makeRoom(0, 0, e)
		return
	}
	if !c.makeRoom(size, 1, nil) {
		return
	}
	e = &cacheEntry{size: size}
	e.v.Store(v)
	c.dirty[string(der)] = e
	c.bytes += size
	c.pending.Store(int64(len(c.dirty)))
	c.countLocked()
}

// makeRoom evicts entries other than keep until adding entries more
// entries of need bytes stays within both bounds, and reports whether it
// does. c.mu is held.
func (c *verdictCache) makeRoom(need int64, adding int, keep *cacheEntry) bool {
	for c.lenLocked()+adding > c.max || c.bytes+c.dead+need > c.maxBytes {
		// Evicted keys are released by a merge. Merging once an eighth of
		// the budget is dead keeps a full cache from copying its read map
		// on every insert.
		if c.dead > 0 && (c.dead >= c.maxBytes/8 || c.bytes+need <= c.maxBytes && c.lenLocked()+adding <= c.max) {
			c.merge()
			continue
		}
		if !c.evictOne(keep) {
			if c.dead > 0 {
				c.merge()
				continue
			}
			return false
		}
	}
	return true
}

// evictOne drops one entry other than keep, preferring one that was not
// hit since the last sweep: the scan clears the used bits it passes, so a
// second scan always finds one. Dirty entries go first: they are freed at
// once, while a read entry's key stays until the next merge.
func (c *verdictCache) evictOne(keep *cacheEntry) bool {
	for pass := 0; pass < 2; pass++ {
		for k, e := range c.dirty {
			if e == keep {
				continue
			}
			if e.used.Load() && pass == 0 {
				e.used.Store(false)
				continue
			}
			delete(c.dirty, k)
			c.bytes -= e.size
			c.pending.Store(int64(len(c.dirty)))
			return true
		}
		for _, e := range *c.read.Load() {
			if e == keep || e.v.Load() == nil {
				continue
			}
			if e.used.Load() && pass == 0 {
				e.used.Store(false)
				continue
			}
			e.v.Store(nil)
			c.evicted++
			c.bytes -= e.size
			c.dead += e.size
			return true
		}
	}
	return false
}

// countLocked counts one locked operation and merges dirty into a new read
// map once the locked operations since the last merge reach a quarter of
// the entries: the copy then costs a few map inserts per operation.
func (c *verdictCache) countLocked() {
	c.locked++
	if c.locked < mergeFloor+len(*c.read.Load())/4 || (len(c.dirty) == 0 && c.evicted == 0) {
		return
	}
	c.merge()
}

// merge builds a new read map of the live entries. c.mu is held.
func (c *verdictCache) merge() {
	read := *c.read.Load()
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
	c.evicted, c.locked, c.dead = 0, 0, 0
}

func (c *verdictCache) lenLocked() int {
	return len(*c.read.Load()) - c.evicted + len(c.dirty)
}

func (c *verdictCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lenLocked()
}

// size returns the accounted bytes: live entries and evicted keys not yet
// released. It never exceeds the budget.
func (c *verdictCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes + c.dead
}

// entrySize is the accounted size of caching v under key: the key (the
// leaf DER), the strings the verdict holds and a fixed overhead.
func entrySize(key []byte, v *verdict) int64 {
	n := entryOverhead + len(key) + len(v.certSHA) + len(v.restSums)*sha256.Size
	if ci := v.cert; ci != nil {
		n += len(ci.Serial) + len(ci.SHA256) + len(ci.Subject) + len(ci.Issuer) + len(ci.AppID) + len(ci.BuildID)
	}
	n += len(v.build.ID) + len(v.build.User) + len(v.build.Host) + len(v.build.SDK) + len(v.build.InstallID)
	for k, val := range v.data {
		n += 64 + len(k)
		switch x := val.(type) {
		case string:
			n += len(x)
		case []string:
			for _, s := range x {
				n += 16 + len(s)
			}
		default:
			n += 16
		}
	}
	return int64(n)
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
