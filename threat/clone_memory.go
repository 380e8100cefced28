package threat

import (
	"context"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultMaxCloneEntries bounds the certificates a MemoryStore counts uses
// of. An entry costs at most about 1 KiB (two sketches of at most ~300
// bytes, CloneSampleSize sampled addresses, the key and the map slot); a
// certificate with one client, the common case, about 250 bytes. Only
// certificates that verified are counted, so the entries are bounded by what
// the CA issued, and this limit bounds them again: at most about 64 MiB.
const DefaultMaxCloneEntries = 65536

const (
	cloneShards = 16
	// cloneEvictSample is how many entries eviction looks at (in the map's
	// random order) for one whose window is over before it takes the least
	// recently used of them: an approximate LRU without a list to keep.
	cloneEvictSample = 8
)

// cloneEntry is one certificate's counts in one window.
type cloneEntry struct {
	ns, cert string
	// windowStart and windowEnd are Unix nanoseconds; lastUse orders
	// entries for eviction.
	windowStart, windowEnd, lastUse int64
	addrs, devs                     cloneSketch
	// reportedA and reportedD are the highest levels reported in the
	// window (ClonePolicy.Levels).
	reportedA, reportedD int
	sample               [CloneSampleSize]string
	nsample              int
}

func (e *cloneEntry) reset(start, end int64) {
	e.windowStart, e.windowEnd = start, end
	e.addrs.reset()
	e.devs.reset()
	e.reportedA, e.reportedD = 0, 0
	e.sample, e.nsample = [CloneSampleSize]string{}, 0
}

type cloneShard struct {
	mu sync.Mutex
	// m is keyed by the hash of the set and certificate (cloneTable.key),
	// which is cheaper to look up than the two strings; the entry holds
	// them, and a different pair under the same hash (a 64-bit collision
	// under a random seed) just takes the entry over.
	m   map[uint64]*cloneEntry
	max int
}

// cloneTable is the MemoryStore's clone detection state.
type cloneTable struct {
	seed   maphash.Seed
	shards [cloneShards]cloneShard
}

func newCloneTable(maxEntries int) *cloneTable {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxCloneEntries
	}
	t := &cloneTable{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*cloneEntry)
		t.shards[i].max = (maxEntries + cloneShards - 1) / cloneShards
	}
	return t
}

// hash is the 32-bit hash sketches count, from the table's random seed.
func (t *cloneTable) hash(v string) uint32 {
	h := maphash.String(t.seed, v)
	return uint32(h) ^ uint32(h>>32)
}

// count records use in its window and returns the counts (see
// CloneCounter). The caller has checked that use.CertSHA is set and p is
// enabled.
func (t *cloneTable) count(ns string, use CertUse, p ClonePolicy, now int64) CloneResult {
	start := p.windowStart(now)
	k := maphash.String(t.seed, use.CertSHA) ^ maphash.String(t.seed, ns)*0x9e3779b97f4a7c15
	sh := &t.shards[k%cloneShards]
	// Hash outside the lock.
	var ha, hd uint32
	if use.Address != "" {
		ha = t.hash(use.Address)
	}
	if use.DeviceID != "" {
		hd = t.hash(use.DeviceID)
	}

	sh.mu.Lock()
	e := sh.m[k]
	switch {
	case e == nil:
		if len(sh.m) >= sh.max {
			sh.evict(now)
		}
		e = &cloneEntry{ns: ns, cert: use.CertSHA}
		sh.m[k] = e
		e.reset(start, start+int64(p.WindowOrDefault()))
	case e.cert != use.CertSHA || e.ns != ns:
		e.ns, e.cert = ns, use.CertSHA
		e.reset(start, start+int64(p.WindowOrDefault()))
	case e.windowStart != start:
		e.reset(start, start+int64(p.WindowOrDefault()))
	}
	e.lastUse = now
	if use.Address != "" && e.addrs.add(ha) && e.nsample < CloneSampleSize {
		// A copy: the address may be a slice of a request's buffer.
		e.sample[e.nsample] = strings.Clone(use.Address)
		e.nsample++
	}
	if use.DeviceID != "" {
		e.devs.add(hd)
	}
	res := CloneResult{Addresses: e.addrs.count(), Devices: e.devs.count(), WindowStart: time.Unix(0, start)}
	a, d := p.Levels(res.Addresses, res.Devices)
	if a > e.reportedA || d > e.reportedD {
		res.Report = true
		e.reportedA, e.reportedD = max(a, e.reportedA), max(d, e.reportedD)
		res.Sample = slices.Clone(e.sample[:e.nsample])
	}
	sh.mu.Unlock()
	return res
}

// evict removes one entry to make room: the first of a few sampled whose
// window is over, or else the least recently used of them. The caller
// holds sh.mu.
func (sh *cloneShard) evict(now int64) {
	var victim uint64
	oldest, n := int64(0), 0
	for k, e := range sh.m {
		if now >= e.windowEnd {
			victim = k
			break
		}
		if n == 0 || e.lastUse < oldest {
			victim, oldest = k, e.lastUse
		}
		if n++; n >= cloneEvictSample {
			break
		}
	}
	delete(sh.m, victim)
}

// sweep frees entries whose window is over, looking at no more than limit
// entries per shard (all when limit <= 0).
func (t *cloneTable) sweep(now int64, limit int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n := 0
		for k, e := range sh.m {
			if limit > 0 && n >= limit {
				break
			}
			n++
			if now >= e.windowEnd {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len returns the number of certificates held.
func (t *cloneTable) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

var _ CloneCounter = (*MemoryStore)(nil)

// BannedCounting implements CloneCounter: Banned, and the use counted in
// process memory. With nothing to count it is Banned, lock-free when no ban
// is live; counting takes one shard lock and allocates nothing for a
// returning client.
func (s *MemoryStore) BannedCounting(ctx context.Context, ns string, sub Subject, use CertUse, p ClonePolicy) (time.Time, CloneResult, error) {
	until, err := s.Banned(ctx, ns, sub)
	if err != nil || use.CertSHA == "" || !p.Enabled() {
		return until, CloneResult{}, err
	}
	at := use.At
	if at.IsZero() {
		at = s.now()
	}
	res := s.clones.count(ns, use, p, at.UnixNano())
	if use.BanFor > 0 && res.Over(p) {
		res.CertBannedUntil = s.banCert(ns, use.CertSHA, at, use.BanFor)
	}
	return until, res, nil
}

// banCert bans the certificate key of ns for banFor from at, unless a ban
// of it is live (which it returns instead), as Add bans a key whose score
// reached the threshold: Banned, Bans and Lift see it like any other.
func (s *MemoryStore) banCert(ns, certSHA string, at time.Time, banFor time.Duration) time.Time {
	now := at.UnixNano()
	k := memKey{ns: ns, kind: kindCert, val: certSHA}
	sh := s.shard(k)
	sh.mu.Lock()
	e := s.use(sh, k, now)
	if now >= e.bannedUntil {
		if e.bannedUntil != 0 {
			// The old ban is over (see Add).
			e.bannedUntil = 0
			s.bans.Add(-1)
		}
		s.ban(e, now+int64(banFor))
	}
	until := e.bannedUntil
	sh.mu.Unlock()
	return time.Unix(0, until).In(at.Location())
}

// CloneLen returns the number of certificates whose uses are counted, for
// tests and metrics.
func (s *MemoryStore) CloneLen() int { return s.clones.len() }
