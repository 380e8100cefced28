package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// snapshot is a published (or publishable) snapshot of one node group.
//
// Each resource type has its own version, a hash of that type's resources:
// state-of-the-world xDS resends every resource of a type whose version
// changed, so a new CA (one SDS secret) must not resend the listeners,
// clusters and endpoints of a thousand fusion sets to every Envoy. The
// snapshot's id hashes the type versions; the status page shows it.
type snapshot struct {
	snap *cachev3.Snapshot
	id   string
	// versions maps type URL to version, for the types that have
	// resources (a type without any is never asked for by name).
	versions map[string]string
}

// newSnapshot versions res per type and assembles the cache snapshot.
func newSnapshot(res Resources) (*snapshot, error) {
	s := &snapshot{snap: &cachev3.Snapshot{}, versions: map[string]string{}}
	var ids []string
	for _, typ := range sortedKeys(res) {
		idx := cachev3.GetResponseType(typ)
		if idx == types.UnknownType {
			return nil, errors.New("unknown resource type " + typ)
		}
		v, err := typeVersion(typ, res[typ])
		if err != nil {
			return nil, err
		}
		s.snap.Resources[idx] = cachev3.NewResources(v, res[typ])
		if len(res[typ]) > 0 {
			s.versions[typ] = v
			ids = append(ids, typ+"="+v)
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	s.id = hex.EncodeToString(sum[:])[:16]
	return s, nil
}

// emptySnapshot is what a node group gets once it is gone from the file.
func emptySnapshot() *snapshot {
	return &snapshot{snap: &cachev3.Snapshot{}, id: "empty", versions: map[string]string{}}
}

// typeVersion hashes the resources of one type, in name order, so that the
// same resources always give the same version: an unrelated change of the
// file pushes nothing, and rejected resources are recognized if they come
// back.
func typeVersion(typ string, rs []types.Resource) (string, error) {
	sorted := append([]types.Resource(nil), rs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return cachev3.GetResourceName(sorted[i]) < cachev3.GetResourceName(sorted[j])
	})
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, r := range sorted {
		b, err := opts.Marshal(r)
		if err != nil {
			return "", fmt.Errorf("%s %q: %w", typeLabel(typ), cachev3.GetResourceName(r), err)
		}
		fmt.Fprintf(h, "%d\x00", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
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
	s, err := newSnapshot(res)
	if err != nil {
		return "", nil, err
	}
	return s.id, s.versions, nil
}
