package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// typeCaches holds one snapshot cache per resource type, behind one
// cachev3.MuxCache that the xDS server uses.
//
// Why: on every SetSnapshot the snapshot cache computes a delta response
// for every open delta watch of the group, of every type, whether the type
// changed or not, walking each watch's subscribed resources. With a hundred
// Envoys and a thousand fusion sets that is hundreds of thousands of map
// operations, under the cache's lock, for a change of one route. With a
// cache per type, a publication sets only the types whose version changed:
// a route change touches only the route watches.
type typeCaches struct {
	mux    *cachev3.MuxCache
	byType map[string]cachev3.SnapshotCache

	mu sync.Mutex
	// served is the snapshot each group's caches hold, by group.
	served map[string]*snapshot
}

// unknownType classifies requests for a type URL the cache does not know;
// its cache never holds a snapshot, so such a request waits, as it did
// with one snapshot cache.
const unknownType = ""

// setOrder is the order in which a publication reaches the types: clusters
// and endpoints before what routes to them, secrets before the listeners
// that name them, listeners before their routes.
var setOrder = []string{
	resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType,
	resourcev3.ListenerType, resourcev3.RouteType,
}

func newTypeCaches(newCache func() cachev3.SnapshotCache) *typeCaches {
	tc := &typeCaches{byType: map[string]cachev3.SnapshotCache{unknownType: newCache()}, served: map[string]*snapshot{}}
	for i := range types.UnknownType {
		typ, err := cachev3.GetResponseTypeURL(i)
		if err == nil {
			tc.byType[typ] = newCache()
		}
	}
	caches := map[string]cachev3.Cache{}
	for typ, c := range tc.byType {
		caches[typ] = c
	}
	classify := func(typ string) string {
		if _, ok := tc.byType[typ]; ok {
			return typ
		}
		return unknownType
	}
	tc.mux = &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return classify(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return classify(r.GetTypeUrl()) },
		Caches:        caches,
	}
	return tc
}

// set makes the caches serve snap to a group: the types whose version
// differs from what the group's caches hold (all of them the first time),
// in the order Envoy wants updates (clusters and their endpoints before
// the listeners and routes that use them).
func (tc *typeCaches) set(ctx context.Context, cluster string, snap *snapshot) error {
	tc.mu.Lock()
	prev := tc.served[cluster]
	tc.served[cluster] = snap
	tc.mu.Unlock()
	var errs []error
	order := append([]string(nil), setOrder...)
	for i := range types.UnknownType {
		if typ, err := cachev3.GetResponseTypeURL(i); err == nil && !slices.Contains(order, typ) {
			order = append(order, typ)
		}
	}
	for _, typ := range order {
		if prev != nil && prev.snap.GetVersion(typ) == snap.snap.GetVersion(typ) {
			continue
		}
		if err := tc.byType[typ].SetSnapshot(ctx, cluster, snap.byType[typ]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", typeLabel(typ), err))
		}
	}
	return errors.Join(errs...)
}

// get returns the snapshot a group's caches hold.
func (tc *typeCaches) get(cluster string) (cachev3.ResourceSnapshot, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if s := tc.served[cluster]; s != nil {
		return s.snap, nil
	}
	return nil, fmt.Errorf("no snapshot found for node group %s", cluster)
}
