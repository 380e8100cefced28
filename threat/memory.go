package threat

import (
	"cmp"
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxEntries bounds a MemoryStore: beyond it, the least recently
// scored keys are evicted so that a flood of distinct clients cannot grow the
// store without limit.
const DefaultMaxEntries = 1_000_000

// DefaultWindow is the scoring window used when a Policy has none.
const DefaultWindow = time.Minute

const (
	memoryShards = 64
	// sweepPerAdd bounds the cleanup work each Add does: it frees at most this
	// many expired entries from the cold end of its shard.
	sweepPerAdd = 4
	// evictScan is how many cold entries eviction looks through for one that
	// is not banned before it gives up and evicts the coldest anyway.
	evictScan = 8
)

// keyKind tells apart the three parts of a Subject, so that an IP and a
// device id with the same text are different keys.
type keyKind uint8

const (
	kindIP keyKind = iota
	kindDevice
	kindCert
)

// memKey is a comparable struct rather than a concatenated string so that
// looking a key up allocates nothing.
type memKey struct {
	ns   string
	kind keyKind
	val  string
}

type memEntry struct {
	key   memKey
	score int
	// windowEnd and bannedUntil are Unix nanoseconds (0: no ban), not
	// time.Time, to keep a million entries small.
	windowEnd   int64
	bannedUntil int64
	// prev and next link the shard's recency list: head is the most
	// recently scored entry, tail the least.
	prev, next *memEntry
}

// expired reports whether the entry holds neither a live score nor a live ban.
func (e *memEntry) expired(now int64) bool {
	return now >= e.windowEnd && now >= e.bannedUntil
}

type memShard struct {
	mu         sync.RWMutex
	m          map[memKey]*memEntry
	head, tail *memEntry
	max        int
}

// MemoryStore is the embedded Store: scores and bans in process memory,
// sharded by key. Each key scores in a fixed window that starts with its first
// score; a key whose window has passed starts a new one on its next score.
type MemoryStore struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [memoryShards]memShard
	// bans counts entries currently holding a ban (live or not yet
	// cleaned up) and banHorizon is the latest ban expiry ever set, in Unix
	// nanoseconds. Together they let Banned answer "nobody is banned", the
	// common case, without taking a lock.
	bans       atomic.Int64
	banHorizon atomic.Int64
	// clones counts certificate uses for clone detection (clone_memory.go).
	clones *cloneTable
}

var (
	_ Store    = (*MemoryStore)(nil)
	_ BanAdmin = (*MemoryStore)(nil)
)

// NewMemoryStore returns an empty store that reads the time from now
// (time.Now when nil) and holds at most DefaultMaxEntries keys.
func NewMemoryStore(now func() time.Time) *MemoryStore {
	return NewMemoryStoreSize(now, DefaultMaxEntries)
}

// NewMemoryStoreSize is NewMemoryStore with a different entry limit.
func NewMemoryStoreSize(now func() time.Time, maxEntries int) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	perShard := (maxEntries + memoryShards - 1) / memoryShards
	s := &MemoryStore{now: now, seed: maphash.MakeSeed(), clones: newCloneTable(DefaultMaxCloneEntries)}
	for i := range s.shards {
		s.shards[i].m = make(map[memKey]*memEntry)
		s.shards[i].max = perShard
	}
	return s
}

func (s *MemoryStore) shard(k memKey) *memShard {
	// The value alone spreads keys well; hashing ns too would only cost.
	return &s.shards[maphash.String(s.seed, k.val)%memoryShards]
}

// Banned returns the latest ban expiry among the subject's keys in ns, or
// the zero time. It does not allocate, and when no ban is live anywhere in
// the store it takes no lock.
func (s *MemoryStore) Banned(_ context.Context, ns string, sub Subject) (time.Time, error) {
	if s.bans.Load() == 0 {
		return time.Time{}, nil
	}
	t := s.now()
	now := t.UnixNano()
	if now >= s.banHorizon.Load() {
		return time.Time{}, nil
	}
	var latest int64
	for kind, val := range sub.keys() {
		if val == "" {
			continue
		}
		k := memKey{ns: ns, kind: keyKind(kind), val: val}
		sh := s.shard(k)
		sh.mu.RLock()
		if e, ok := sh.m[k]; ok && now < e.bannedUntil && e.bannedUntil > latest {
			latest = e.bannedUntil
		}
		sh.mu.RUnlock()
	}
	if latest == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, latest).In(t.Location()), nil
}

// Add adds delta to each of the subject's keys in ns, in one step per key,
// and bans a key for p.BanFor when a positive delta brings its total to
// p.Threshold while it is not already banned. A Policy with no threshold
// scores but never bans; one with no window uses DefaultWindow.
func (s *MemoryStore) Add(_ context.Context, ns string, sub Subject, delta int, p Policy) (Result, error) {
	t := s.now()
	now := t.UnixNano()
	window := p.Window
	if window <= 0 {
		window = DefaultWindow
	}
	var latest int64
	var res Result
	for kind, val := range sub.keys() {
		if val == "" {
			continue
		}
		k := memKey{ns: ns, kind: keyKind(kind), val: val}
		sh := s.shard(k)
		sh.mu.Lock()
		e := s.use(sh, k, now)
		if now >= e.windowEnd {
			e.score = 0
			e.windowEnd = now + int64(window)
		}
		e.score += delta
		if e.score < 0 {
			e.score = 0
		}
		banned := now < e.bannedUntil
		if !banned && e.bannedUntil != 0 {
			// The old ban is over: forget it so that Banned can go back
			// to its lock-free path once no other ban is held.
			e.bannedUntil = 0
			s.bans.Add(-1)
		}
		if !banned && delta > 0 && p.Enabled() && p.BanFor > 0 && e.score >= p.Threshold {
			s.ban(e, now+int64(p.BanFor))
			banned = true
		}
		if e.score > res.Total {
			res.Total = e.score
		}
		if banned && e.bannedUntil > latest {
			latest = e.bannedUntil
		}
		s.sweep(sh, now, sweepPerAdd)
		sh.mu.Unlock()
	}
	if latest != 0 {
		res.BannedUntil = time.Unix(0, latest).In(t.Location())
	}
	return res, nil
}

// Bans implements BanAdmin: the live bans of ns, or of every set for "".
// It walks the whole store, so it is for operators, not requests.
func (s *MemoryStore) Bans(_ context.Context, ns string) ([]Ban, error) {
	t := s.now()
	now := t.UnixNano()
	var out []Ban
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for k, e := range sh.m {
			if (ns == "" || k.ns == ns) && now < e.bannedUntil {
				out = append(out, memBan(k, e, t, now))
			}
		}
		sh.mu.RUnlock()
	}
	SortBans(out)
	return out, nil
}

// Lift implements BanAdmin: it removes the banned entries of ns that value
// names (see SubjectMatches), score and ban together.
func (s *MemoryStore) Lift(_ context.Context, ns string, kind SubjectKind, value string) ([]Ban, error) {
	t := s.now()
	now := t.UnixNano()
	var out []Ban
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if k.ns == ns && k.kind == keyKind(kind) && now < e.bannedUntil && SubjectMatches(kind, k.val, value) {
				out = append(out, memBan(k, e, t, now))
				s.remove(sh, e)
			}
		}
		sh.mu.Unlock()
	}
	SortBans(out)
	return out, nil
}

func memBan(k memKey, e *memEntry, t time.Time, now int64) Ban {
	b := Ban{Set: k.ns, Kind: SubjectKind(k.kind), Value: k.val, Until: time.Unix(0, e.bannedUntil).In(t.Location())}
	if now < e.windowEnd {
		b.Score = e.score
	}
	return b
}

// SortBans orders bans by set, kind and value.
func SortBans(bans []Ban) {
	slices.SortFunc(bans, func(a, b Ban) int {
		if c := cmp.Compare(a.Set, b.Set); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return cmp.Compare(a.Value, b.Value)
	})
}

// Len returns the number of keys held, for tests and metrics.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Sweep frees expired entries. Add already frees a few per call, and the
// entry limit bounds the store in any case; Sweep is for callers that want
// the memory back after a burst, such as a periodic maintenance tick. It
// looks at no more than limit entries per shard (all when limit <= 0), so a
// tick has a known cost.
func (s *MemoryStore) Sweep(limit int) {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		s.sweepAll(sh, now, limit)
		sh.mu.Unlock()
	}
	s.clones.sweep(now, limit)
}

// Close releases nothing: the store lives in memory and stops with its owner.
func (s *MemoryStore) Close() error { return nil }

func (s *MemoryStore) raiseHorizon(n int64) {
	for {
		cur := s.banHorizon.Load()
		if n <= cur || s.banHorizon.CompareAndSwap(cur, n) {
			return
		}
	}
}

// use returns the entry of k, made the most recently used, or a fresh one.
// The caller holds sh.mu.
func (s *MemoryStore) use(sh *memShard, k memKey, now int64) *memEntry {
	if e := sh.m[k]; e != nil {
		sh.touch(e)
		return e
	}
	return s.insert(sh, k, now)
}

// ban bans e, which holds no ban (its old one cleared), until until. The
// caller holds e's shard lock.
func (s *MemoryStore) ban(e *memEntry, until int64) {
	s.bans.Add(1)
	e.bannedUntil = until
	s.raiseHorizon(until)
}

// insert adds a fresh entry at the head of sh, evicting the coldest entry
// first when the shard is full. The caller holds sh.mu.
func (s *MemoryStore) insert(sh *memShard, k memKey, now int64) *memEntry {
	if len(sh.m) >= sh.max {
		s.evict(sh, now)
	}
	e := &memEntry{key: k}
	sh.m[k] = e
	sh.pushFront(e)
	return e
}

// evict removes one entry, preferring an unbanned one near the cold end so
// that a flood of new keys does not wash out the bans it is trying to evade.
func (s *MemoryStore) evict(sh *memShard, now int64) {
	victim := sh.tail
	for e, i := sh.tail, 0; e != nil && i < evictScan; e, i = e.prev, i+1 {
		if now >= e.bannedUntil {
			victim = e
			break
		}
	}
	if victim != nil {
		s.remove(sh, victim)
	}
}

// sweep looks at up to limit entries at the cold end of sh: it frees the
// expired ones, moves those kept only by a live ban to the warm end (they are
// the last that eviction should pick, and they must not shield the expired
// entries behind them) and stops at the first entry still in its window.
// Entries are ordered by last score, so expired ones gather at the cold end.
func (s *MemoryStore) sweep(sh *memShard, now int64, limit int) {
	for i := 0; i < limit && sh.tail != nil; i++ {
		e := sh.tail
		switch {
		case e.expired(now):
			s.remove(sh, e)
		case now >= e.windowEnd && e != sh.head:
			sh.touch(e)
		default:
			return
		}
	}
}

// sweepAll looks at up to limit entries of sh, all when limit <= 0, and
// frees the expired ones.
func (s *MemoryStore) sweepAll(sh *memShard, now int64, limit int) {
	n := 0
	for e := sh.tail; e != nil && (limit <= 0 || n < limit); n++ {
		prev := e.prev
		if e.expired(now) {
			s.remove(sh, e)
		}
		e = prev
	}
}

func (s *MemoryStore) remove(sh *memShard, e *memEntry) {
	if e.bannedUntil != 0 {
		s.bans.Add(-1)
	}
	delete(sh.m, e.key)
	sh.unlink(e)
}

func (sh *memShard) pushFront(e *memEntry) {
	e.prev = nil
	e.next = sh.head
	if sh.head != nil {
		sh.head.prev = e
	}
	sh.head = e
	if sh.tail == nil {
		sh.tail = e
	}
}

func (sh *memShard) unlink(e *memEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (sh *memShard) touch(e *memEntry) {
	if sh.head == e {
		return
	}
	sh.unlink(e)
	sh.pushFront(e)
}

// keys returns the subject's three key values indexed by keyKind. It is an
// array, not a slice, so ranging over it allocates nothing.
func (sub Subject) keys() [3]string {
	return [3]string{kindIP: sub.IP, kindDevice: sub.DeviceID, kindCert: sub.CertSHA}
}
