package serve

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// snapshot is a published (or publishable) snapshot of one node group.
//
// Each resource has its own version, a hash of its bytes, which is what
// delta xDS compares: a client gets exactly the resources whose bytes
// changed. Each resource type has a version too, a hash of its resources'
// names and versions: state-of-the-world xDS resends every resource of a
// type whose version changed, so a new CA (one SDS secret) must not resend
// the listeners, clusters and endpoints of a thousand fusion sets to every
// Envoy. The snapshot's id hashes the type versions; the status page shows
// it.
type snapshot struct {
	// snap holds every type; byType one type each, for the per-type
	// caches (typecache.go).
	snap   *cacheSnapshot
	byType map[string]*cacheSnapshot
	id     string
	// versions maps type URL to version, for the types that have
	// resources (a type without any is never asked for by name).
	versions map[string]string
}

// cacheSnapshot is what the cache serves: a cachev3.Snapshot whose
// GetResources answers from maps built once. The cache asks it for every
// delta watch of every node on every publication, and cachev3.Snapshot
// builds a new map of all the type's resources each time: with a hundred
// nodes and a thousand fusion sets, megabytes per one-route change.
type cacheSnapshot struct {
	*cachev3.Snapshot
	byType map[string]map[string]types.Resource
}

func newCacheSnapshot(s *cachev3.Snapshot) *cacheSnapshot {
	c := &cacheSnapshot{Snapshot: s, byType: map[string]map[string]types.Resource{}}
	for i := range s.Resources {
		typ, err := cachev3.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			continue
		}
		c.byType[typ] = s.GetResources(typ)
	}
	return c
}

// GetResources implements cachev3.ResourceSnapshot; callers only read.
func (c *cacheSnapshot) GetResources(typeURL string) map[string]types.Resource {
	return c.byType[typeURL]
}

// splitByType returns a snapshot per type, each holding that type only
// (with its delta version map, if any).
func splitByType(all *cachev3.Snapshot) map[string]*cacheSnapshot {
	out := map[string]*cacheSnapshot{}
	for i := range all.Resources {
		typ, err := cachev3.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			continue
		}
		one := &cachev3.Snapshot{}
		one.Resources[i] = all.Resources[i]
		if all.VersionMap != nil {
			one.VersionMap = map[string]map[string]string{typ: all.VersionMap[typ]}
		}
		out[typ] = newCacheSnapshot(one)
	}
	return out
}

// resourceFacts is what publication learns about one resource: its
// version, whether it is valid, what it refers to. Resources are immutable
// once handed to Publish (the snapshot cache's own rule), so the facts are
// computed once per resource and kept while the resource is published:
// a configuration change costs only what it changed.
type resourceFacts struct {
	version string
	// digest hashes the resource's name and version; a type's version
	// sums them (see typeVersion).
	digest   [sha256.Size]byte
	validErr error
	refs     refs
	refsErr  error
	// marshaled is the resource's bytes, as the cache would marshal them
	// for every state-of-the-world response (see sharedMarshal).
	marshaled []byte
}

// factsCache remembers the facts of the resources of the last publication,
// by identity.
type factsCache struct {
	mu       sync.Mutex
	validate func(types.Resource) error
	prev     map[types.Resource]*resourceFacts
	next     map[types.Resource]*resourceFacts
	// served is prev once a publication ends, for readers without mu
	// (the streams): a map is never written once it is prev.
	served atomic.Pointer[map[types.Resource]*resourceFacts]
}

func newFactsCache(validate func(types.Resource) error) *factsCache {
	return &factsCache{validate: validate, prev: map[types.Resource]*resourceFacts{}}
}

// begin starts a publication; the caller holds mu until end.
func (c *factsCache) begin() { c.next = map[types.Resource]*resourceFacts{} }

// abort drops a refused publication's facts: the last good one keeps
// serving, so its facts (and marshalled bytes) stay the ones in force.
func (c *factsCache) abort() { c.next = nil }

// end keeps the facts of what this publication used.
func (c *factsCache) end() {
	c.prev, c.next = c.next, nil
	prev := c.prev
	c.served.Store(&prev)
}

// marshaled returns the bytes of a resource of the last publication, or
// nil. Safe for concurrent use.
func (c *factsCache) marshaled(r types.Resource) []byte {
	if m := c.served.Load(); m != nil {
		if f := (*m)[r]; f != nil {
			return f.marshaled
		}
	}
	return nil
}

// facts returns r's facts, computing them the first time r is seen.
func (c *factsCache) facts(r types.Resource) *resourceFacts {
	if f := c.next[r]; f != nil {
		return f
	}
	f := c.prev[r]
	if f == nil {
		f = computeFacts(r, c.validate)
	}
	c.next[r] = f
	return f
}

func computeFacts(r types.Resource, validate func(types.Resource) error) *resourceFacts {
	f := &resourceFacts{}
	// The snapshot cache's own marshalling and hash, so that a version
	// means what it would have computed itself.
	b, err := cachev3.MarshalResource(r)
	if err != nil {
		f.validErr = fmt.Errorf("marshalling: %w", err)
	} else {
		f.marshaled = b
		f.version = cachev3.HashResource(b)
		f.digest = sha256.Sum256([]byte(cachev3.GetResourceName(r) + "\x00" + f.version))
	}
	if validate != nil && f.validErr == nil {
		f.validErr = validate(r)
	}
	f.refs, f.refsErr = resourceRefs(r)
	return f
}

// newSnapshot versions res per resource and per type and assembles the
// cache snapshot, with its delta version map filled in (the cache would
// otherwise marshal and hash every resource again).
func newSnapshot(res Resources, facts func(types.Resource) *resourceFacts) (*snapshot, error) {
	snap := &cachev3.Snapshot{VersionMap: map[string]map[string]string{}}
	s := &snapshot{versions: map[string]string{}}
	for i := range snap.Resources {
		typ, err := cachev3.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			return nil, err
		}
		snap.VersionMap[typ] = map[string]string{}
	}
	var ids []string
	for _, typ := range sortedKeys(res) {
		idx := cachev3.GetResponseType(typ)
		if idx == types.UnknownType {
			return nil, errors.New("unknown resource type " + typ)
		}
		byName := snap.VersionMap[typ]
		var sum typeSum
		for _, r := range res[typ] {
			f := facts(r)
			if f.version == "" {
				return nil, fmt.Errorf("%s %q: %w", typeLabel(typ), cachev3.GetResourceName(r), f.validErr)
			}
			name := cachev3.GetResourceName(r)
			if _, dup := byName[name]; dup {
				return nil, fmt.Errorf("%s %q: twice in one node group", typeLabel(typ), name)
			}
			byName[name] = f.version
			sum.add(f.digest)
		}
		v := sum.version()
		snap.Resources[idx] = cachev3.NewResources(v, res[typ])
		if len(res[typ]) > 0 {
			s.versions[typ] = v
			ids = append(ids, typ+"="+v)
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	s.id = hex.EncodeToString(sum[:])[:16]
	s.snap = newCacheSnapshot(snap)
	s.byType = splitByType(snap)
	return s, nil
}

// emptySnapshot is what a node group gets once it is gone from the file.
func emptySnapshot() *snapshot {
	empty := &cachev3.Snapshot{}
	return &snapshot{snap: newCacheSnapshot(empty), byType: splitByType(empty), id: "empty", versions: map[string]string{}}
}

// typeSum is the version of one type's resources: the sum, lane by lane,
// of each resource's digest (of its name and version), hashed with the
// count. A sum does not depend on the order of the resources, so the same
// resources always give the same version (an unrelated change of the file
// pushes nothing, and rejected resources are recognized if they come back),
// and it costs no sorting of thousands of names per publication. Versions
// only tell configurations apart; whoever could craft a collision writes
// the configuration anyway.
type typeSum struct {
	n     int
	lanes [sha256.Size / 8]uint64
}

func (t *typeSum) add(d [sha256.Size]byte) {
	t.n++
	for i := range t.lanes {
		t.lanes[i] += binary.LittleEndian.Uint64(d[8*i:])
	}
}

func (t *typeSum) version() string {
	b := binary.LittleEndian.AppendUint64(nil, uint64(t.n))
	for _, l := range t.lanes {
		b = binary.LittleEndian.AppendUint64(b, l)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// acceptedBy reports whether a node's ACKed versions (type URL to version)
// cover everything in s.
func (s *snapshot) acceptedBy(acked map[string]string) bool {
	for typ, v := range s.versions {
		if acked[typ] != v {
			return false
		}
	}
	return true
}

// Versions returns the version a group with resources res gets: the
// snapshot id shown on the status page, and the version of each resource
// type (by type URL) that nodes ACK or NACK.
func Versions(res Resources) (id string, byType map[string]string, err error) {
	s, err := newSnapshot(res, func(r types.Resource) *resourceFacts { return computeFacts(r, nil) })
	if err != nil {
		return "", nil, err
	}
	return s.id, s.versions, nil
}
