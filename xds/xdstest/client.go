package xdstest

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// RejectFunc decides whether the client accepts a response: a non-nil error
// makes it NACK the response with the error's text, as Envoy does when a
// resource fails its checks. resources are the response's resources by name.
type RejectFunc func(typeURL string, resources map[string]*anypb.Any) error

// View is a copy of what a client has accepted.
type View struct {
	// Versions maps type URL to the version the client last accepted
	// (state of the world: version_info; delta: system_version_info).
	Versions map[string]string
	// Resources maps type URL to resource name to resource.
	Resources map[string]map[string]*anypb.Any
	// Responses and NACKs count responses received and rejected, by type.
	Responses map[string]int
	NACKs     map[string]int
}

// Names returns the sorted names of the accepted resources of typeURL.
func (v View) Names(typeURL string) []string {
	var out []string
	for n := range v.Resources[typeURL] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TotalNACKs sums NACKs over all types.
func (v View) TotalNACKs() int {
	n := 0
	for _, c := range v.NACKs {
		n += c
	}
	return n
}

// state is the accepted configuration shared by both client flavours.
type state struct {
	mu        sync.Mutex
	versions  map[string]string
	resources map[string]map[string]*anypb.Any
	responses map[string]int
	nacks     map[string]int
	changed   chan struct{} // closed and replaced on every change
	err       error         // stream error once the stream ended
	observe   func(Received)
	// refs are the names the accepted listeners and clusters reference,
	// recomputed only when those change (a response of another type
	// leaves them as they are).
	routes, secrets, endpoints []string
	cancel                     context.CancelFunc
	done                       chan struct{} // closed when the receive loop has stopped
}

func newState(cancel context.CancelFunc) *state {
	return &state{
		cancel:    cancel,
		done:      make(chan struct{}),
		versions:  map[string]string{},
		resources: map[string]map[string]*anypb.Any{},
		responses: map[string]int{},
		nacks:     map[string]int{},
		changed:   make(chan struct{}),
	}
}

func (s *state) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *state) view() View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked()
}

func (s *state) viewLocked() View {
	v := View{Versions: map[string]string{}, Resources: map[string]map[string]*anypb.Any{}, Responses: map[string]int{}, NACKs: map[string]int{}}
	for k, x := range s.versions {
		v.Versions[k] = x
	}
	for t, m := range s.resources {
		v.Resources[t] = map[string]*anypb.Any{}
		for n, r := range m {
			v.Resources[t][n] = r
		}
	}
	for k, x := range s.responses {
		v.Responses[k] = x
	}
	for k, x := range s.nacks {
		v.NACKs[k] = x
	}
	return v
}

// wait blocks until cond holds for the accepted state, the stream ends, or
// ctx is done.
func (s *state) wait(ctx context.Context, cond func(View) bool) (View, error) {
	for {
		s.mu.Lock()
		v := s.viewLocked()
		ch, err := s.changed, s.err
		s.mu.Unlock()
		if cond(v) {
			return v, nil
		}
		if err != nil {
			return v, fmt.Errorf("stream ended: %w", err)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, fmt.Errorf("waiting for the xDS client: %w", ctx.Err())
		}
	}
}

func (s *state) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.notifyLocked()
	s.mu.Unlock()
}

// references returns what accepted listeners and clusters make an Envoy
// subscribe to by name: route configurations (RDS) and secrets (SDS) from
// the listeners, endpoints (EDS) from EDS clusters.
func references(listeners, clusters map[string]*anypb.Any) (routes, secrets, endpoints []string) {
	rs, ss, es := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, a := range listeners {
		l := &listenerv3.Listener{}
		if a.UnmarshalTo(l) != nil {
			continue
		}
		hcmRDS := func(tc *anypb.Any) {
			h := &hcmv3.HttpConnectionManager{}
			if tc != nil && tc.UnmarshalTo(h) == nil && h.GetRds() != nil {
				rs[h.GetRds().GetRouteConfigName()] = true
			}
		}
		if api := l.GetApiListener(); api != nil {
			hcmRDS(api.GetApiListener())
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcmRDS(f.GetTypedConfig())
			}
			dtc := &tlsv3.DownstreamTlsContext{}
			if tc := fc.GetTransportSocket().GetTypedConfig(); tc != nil && tc.UnmarshalTo(dtc) == nil {
				ctc := dtc.GetCommonTlsContext()
				for _, sds := range ctc.GetTlsCertificateSdsSecretConfigs() {
					ss[sds.GetName()] = true
				}
				if v := ctc.GetValidationContextSdsSecretConfig(); v != nil {
					ss[v.GetName()] = true
				}
			}
		}
	}
	for name, a := range clusters {
		c := &clusterv3.Cluster{}
		if a.UnmarshalTo(c) != nil || c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			es[sn] = true
		} else {
			es[name] = true
		}
	}
	return sortedSet(rs), sortedSet(ss), sortedSet(es)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wildcardTypes are subscribed without names, as Envoy does for LDS and CDS.
var wildcardTypes = []string{resourcev3.ClusterType, resourcev3.ListenerType}

// resourceName unpacks a resource to read its name.
func resourceName(a *anypb.Any) (string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return "", fmt.Errorf("unpacking %s: %w", a.GetTypeUrl(), err)
	}
	return cachev3.GetResourceName(m), nil
}

// Received describes one response as the client got it.
type Received struct {
	TypeURL string
	// Names are the resources the response carried (delta: added or
	// changed ones; state of the world: all of the type).
	Names   []string
	Removed []string
	// Bytes is the size of the response message.
	Bytes int
	NACK  bool
	At    time.Time
}

// Observe calls fn for every later response, after the client applied
// (or rejected) it, on the client's receive goroutine: fn must be quick.
func (s *state) Observe(fn func(Received)) {
	s.mu.Lock()
	s.observe = fn
	s.mu.Unlock()
}

func (s *state) observed(r Received) {
	s.mu.Lock()
	fn := s.observe
	s.mu.Unlock()
	if fn != nil {
		fn(r)
	}
}

// updateRefsLocked recomputes what the accepted listeners and clusters
// reference after a response of type typ.
func (s *state) updateRefsLocked(typ string) {
	if typ == resourcev3.ListenerType || typ == resourcev3.ClusterType {
		s.routes, s.secrets, s.endpoints = references(s.resources[resourcev3.ListenerType], s.resources[resourcev3.ClusterType])
	}
}

// View returns what the client has accepted so far.
func (s *state) View() View { return s.view() }

// Wait blocks until cond holds, the stream fails, or ctx ends.
func (s *state) Wait(ctx context.Context, cond func(View) bool) (View, error) {
	return s.wait(ctx, cond)
}

// Close ends the stream and waits for the client to stop.
func (s *state) Close() {
	s.cancel()
	<-s.done
}

// receive runs a client's receive loop until the stream or handle fails; the
// two protocol flavours differ only in their message types.
func receive[T any](s *state, recv func() (T, error), handle func(T) error) {
	defer close(s.done)
	for {
		resp, err := recv()
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("server closed the stream")
			}
			s.fail(err)
			return
		}
		if err := handle(resp); err != nil {
			s.fail(err)
			return
		}
	}
}
