package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
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
//
// Delta and state-of-the-world watches live in caches of their own (byType
// and sotwByType), and a publication reaches the delta ones first: setting
// a snapshot answers the cache's state-of-the-world watches with every
// resource of the type, which the delta watches of a one-route change
// need not wait for.
type typeCaches struct {
	mux        *cachev3.MuxCache
	byType     map[string]cachev3.SnapshotCache
	sotwByType map[string]cachev3.SnapshotCache

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

func newTypeCaches(newCache func() cachev3.SnapshotCache, marshaled func(types.Resource) []byte) *typeCaches {
	tc := &typeCaches{byType: map[string]cachev3.SnapshotCache{unknownType: newCache()},
		sotwByType: map[string]cachev3.SnapshotCache{unknownType: newCache()}, served: map[string]*snapshot{}}
	for i := range types.UnknownType {
		typ, err := cachev3.GetResponseTypeURL(i)
		if err == nil {
			tc.byType[typ] = newCache()
			tc.sotwByType[typ] = newCache()
		}
	}
	const sotw = "sotw "
	caches := map[string]cachev3.Cache{}
	for typ, c := range tc.byType {
		caches[typ] = c
	}
	for typ, c := range tc.sotwByType {
		caches[sotw+typ] = c
	}
	caches[sotw+resourcev3.RouteType] = sharedMarshal{SnapshotCache: tc.sotwByType[resourcev3.RouteType], marshaled: marshaled}
	classify := func(typ string) string {
		if _, ok := tc.byType[typ]; ok {
			return typ
		}
		return unknownType
	}
	tc.mux = &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return sotw + classify(r.GetTypeUrl()) },
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
	for _, caches := range []map[string]cachev3.SnapshotCache{tc.byType, tc.sotwByType} {
		for _, typ := range order {
			if prev != nil && prev.snap.GetVersion(typ) == snap.snap.GetVersion(typ) {
				continue
			}
			if err := caches[typ].SetSnapshot(ctx, cluster, snap.byType[typ]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", typeLabel(typ), err))
			}
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

// sharedMarshal is the route cache as the xDS server sees it: its state
// of the world responses carry the bytes publication marshalled once per
// resource (resourceFacts.marshaled), where the snapshot cache would
// marshal every route configuration again for every stream: with twenty
// state-of-the-world Envoys and a thousand fusion sets, twenty thousand
// marshals for a one-route change, on the cores the delta streams need.
// Only routes go this way: the forwarding hop may reorder a response
// against other types' responses, and routes are the leaves of xDS (a
// route configuration is set last, see setOrder, and nothing waits for
// it).
type sharedMarshal struct {
	cachev3.SnapshotCache
	marshaled func(types.Resource) []byte
}

// CreateWatch implements cachev3.ConfigWatcher. Like the snapshot cache,
// it never sends on value once cancel has returned; unlike it, a send that
// cannot proceed never holds up cancel.
func (c sharedMarshal) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, value chan cachev3.Response) (func(), error) {
	inner := make(chan cachev3.Response, 1)
	cancel, err := c.SnapshotCache.CreateWatch(req, sub, inner)
	if err != nil {
		return cancel, err
	}
	w := &forward{done: make(chan struct{})}
	go func() {
		var r cachev3.Response
		select {
		case r = <-inner:
		case <-w.done:
			return
		}
		if raw, ok := r.(*cachev3.RawResponse); ok && !raw.Heartbeat {
			r = sharedResponse{RawResponse: raw, marshaled: c.marshaled}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		select {
		case <-w.done:
			return
		default:
		}
		select {
		case value <- r:
		case <-w.done:
		}
	}()
	return func() {
		w.once.Do(func() { close(w.done) })
		// Wait out a send under way: none starts after this.
		w.mu.Lock()
		w.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}, nil
}

// forward is one watch's hop from the snapshot cache to the server.
type forward struct {
	once sync.Once
	done chan struct{}
	// mu is held while a response is being sent.
	mu sync.Mutex
}

// sharedResponse is a RawResponse whose resources are the bytes already
// marshalled, in a DiscoveryResponse of its own (the server stamps a nonce
// on it).
type sharedResponse struct {
	*cachev3.RawResponse
	marshaled func(types.Resource) []byte
}

// GetDiscoveryResponse implements cachev3.Response as RawResponse does.
func (r sharedResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	raw := r.GetRawResources()
	url := r.GetRequest().GetTypeUrl()
	out := make([]*anypb.Any, 0, len(raw))
	for _, res := range raw {
		if res.TTL != nil {
			return r.RawResponse.GetDiscoveryResponse()
		}
		b := r.marshaled(res.Resource)
		if b == nil {
			var err error
			if b, err = cachev3.MarshalResource(res.Resource); err != nil {
				return nil, fmt.Errorf("processing %s: marshaling: %w", cachev3.GetResourceName(res.Resource), err)
			}
		}
		out = append(out, &anypb.Any{TypeUrl: url, Value: b})
	}
	return &discovery.DiscoveryResponse{VersionInfo: r.Version, Resources: out, TypeUrl: url}, nil
}
