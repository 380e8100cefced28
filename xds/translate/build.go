package translate

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mccgate/mcc/xds/gateway"
)

// Build translates the input into one set of resources per node group,
// keyed by the group's Envoy node cluster. It is NewTranslator().Build: a
// translation that remembers nothing.
func Build(in Input) (map[string]Resources, error) { return NewTranslator().Build(in) }

// Translator translates like Build and remembers each resource it built with
// the inputs that produced it. A later Build re-translates only resources
// whose inputs changed and returns the very same proto (pointer) for the
// others: a one-route change of a file with a thousand fusion sets costs one
// route configuration, and what comes after (validation, hashing, delta
// xDS) can tell unchanged resources by identity.
//
// The returned protos are shared with later builds: nobody may change them.
type Translator struct {
	mu   sync.Mutex
	prev map[string]memoEntry // the last build's resources, by kind and name
	next map[string]memoEntry
}

type memoEntry struct {
	key string
	res types.Resource
}

// NewTranslator returns a Translator that has built nothing yet.
func NewTranslator() *Translator { return &Translator{prev: map[string]memoEntry{}} }

// memo returns the resource remembered under id if it was built from key,
// and builds (and remembers) it otherwise. Only what this build uses is
// kept for the next one.
func (t *Translator) memo(id, key string, build func(p *packer) (types.Resource, error)) (types.Resource, error) {
	if e, ok := t.next[id]; ok && e.key == key {
		return e.res, nil
	}
	if e, ok := t.prev[id]; ok && e.key == key {
		t.next[id] = e
		return e.res, nil
	}
	p := &packer{}
	r, err := build(p)
	if err == nil {
		err = p.err
	}
	if err != nil {
		return nil, err
	}
	t.next[id] = memoEntry{key: key, res: r}
	return r, nil
}

// inputKey is a compact, collision-resistant key of a resource's inputs:
// a hash of the parts, each written with its length so that boundaries
// are unambiguous.
func inputKey(parts ...any) string {
	h := sha256.New()
	var buf []byte
	put := func(b []byte) {
		buf = strconv.AppendInt(buf[:0], int64(len(b)), 10)
		buf = append(buf, ':')
		h.Write(buf)
		h.Write(b)
	}
	for _, p := range parts {
		switch v := p.(type) {
		case []byte:
			put(v)
		case string:
			put([]byte(v))
		case []string:
			put(strconv.AppendInt(nil, int64(len(v)), 10))
			for _, x := range v {
				put([]byte(x))
			}
		default:
			// Small structs and numbers only: %#v prints their fields.
			put(fmt.Appendf(nil, "%#v", v))
		}
	}
	return string(h.Sum(nil))
}

// Build translates the input into one set of resources per node group.
//
// A group gets its listeners and exactly what they reference (route
// configurations, clusters, endpoints, secrets), nothing more: in ADS mode
// the snapshot cache answers a request for named resources only when the
// node asked for every resource of that type in the snapshot, so a secret of
// a fusion set the group does not serve would stall the group's SDS.
//
// Routes are split by fusion set: each filter chain (one per fusion set)
// has its own route configuration, mcc-routes-<listener>/<set>, so a route
// change sends one small resource instead of every virtual host of the
// listener.
func (t *Translator) Build(in Input) (map[string]Resources, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next = map[string]memoEntry{}
	out, err := t.build(in)
	if err != nil {
		return nil, err // keep what the last good build remembered
	}
	t.prev, t.next = t.next, nil
	return out, nil
}

func (t *Translator) build(in Input) (map[string]Resources, error) {
	g := in.Gateway
	if g == nil {
		return nil, fmt.Errorf("no gateway section")
	}
	// Shared across groups: each resource is built once; groups hold
	// pointers to the same immutable protos.
	type listenerOut struct {
		listener types.Resource
		routes   []types.Resource
		secret   types.Resource
	}
	listeners := map[string]listenerOut{}
	validation := map[string]types.Resource{}
	for _, l := range g.Listeners {
		var lo listenerOut
		var err error
		if lo.listener, lo.routes, err = t.listener(l, in.Sets, g.Authz); err != nil {
			return nil, err
		}
		if lo.secret, err = t.serverCertSecret(l); err != nil {
			return nil, err
		}
		listeners[l.Name] = lo
		for _, id := range l.FusionSets() {
			if validation[id] != nil {
				continue
			}
			s := in.Sets[id]
			sec, err := t.memo("secret/"+ValidationSecretName(id), validationKey(s), func(*packer) (types.Resource, error) {
				return validationSecret(s)
			})
			if err != nil {
				return nil, err
			}
			validation[id] = sec
		}
	}
	authz, err := t.controlClusters(g.Authz)
	if err != nil {
		return nil, err
	}
	upstreamByName := make(map[string]*gateway.Upstream, len(g.Upstreams))
	for _, u := range g.Upstreams {
		upstreamByName[u.Name] = u
	}
	out := make(map[string]Resources, len(g.NodeGroups))
	for _, ng := range g.NodeGroups {
		res := Resources{}
		add := func(typ resourcev3.Type, rs ...types.Resource) { res[typ] = append(res[typ], rs...) }
		setSeen := map[string]bool{}
		upstreamSeen := map[string]bool{}
		var upstreams []*gateway.Upstream
		for _, name := range ng.Listeners {
			l := g.Listener(name)
			if l == nil {
				return nil, fmt.Errorf("node group %q: unknown listener %q", ng.Cluster, name)
			}
			lo := listeners[name]
			add(resourcev3.ListenerType, lo.listener)
			add(resourcev3.RouteType, lo.routes...)
			add(resourcev3.SecretType, lo.secret)
			for _, id := range l.FusionSets() {
				if !setSeen[id] {
					setSeen[id] = true
					add(resourcev3.SecretType, validation[id])
				}
			}
			for _, r := range l.Routes {
				if !upstreamSeen[r.Upstream] {
					upstreamSeen[r.Upstream] = true
					u := upstreamByName[r.Upstream]
					if u == nil {
						return nil, fmt.Errorf("listener %q: unknown upstream %q", name, r.Upstream)
					}
					upstreams = append(upstreams, u)
				}
			}
		}
		add(resourcev3.ClusterType, authz.clusters...)
		add(resourcev3.EndpointType, authz.endpoints...)
		for _, u := range upstreams {
			c, cla, err := t.upstream(u)
			if err != nil {
				return nil, err
			}
			add(resourcev3.ClusterType, c)
			add(resourcev3.EndpointType, cla)
		}
		out[ng.Cluster] = res
	}
	return out, nil
}

// listener returns the listener and its route configurations (one per
// fusion set, in the order of the filter chains).
func (t *Translator) listener(l *gateway.Listener, sets map[string]*FusionSet, authz gateway.Authz) (types.Resource, []types.Resource, error) {
	var chainKeys []string
	var routes []types.Resource
	chains := map[string]types.Resource{}
	bySet := routesBySet(l)
	for _, id := range l.FusionSets() {
		s := sets[id]
		if s == nil {
			return nil, nil, fmt.Errorf("listener %q: fusion set %q: not loaded", l.Name, id)
		}
		// A filter chain depends on the set's id and mode, its hosts on
		// this listener and the ext_authz timeout, not on its CA: a new CA
		// or CRL changes the validation secret only.
		setRoutes := bySet[id]
		hosts := hostsOf(setRoutes)
		key := inputKey(l.Name, s.ID, string(s.Mode), hosts, authz.Timeout)
		fc, err := t.memo("chain/"+l.Name+"/"+id, key, func(p *packer) (types.Resource, error) {
			return filterChain(p, l, s, hosts, authz.Timeout), nil
		})
		if err != nil {
			return nil, nil, err
		}
		chains[id] = fc
		chainKeys = append(chainKeys, key)
		rc, err := t.memo("route/"+RouteConfigName(l.Name, id), inputKey(l.Name, id, routeInputs(setRoutes)), func(p *packer) (types.Resource, error) {
			return routeConfig(p, l.Name, id, setRoutes), nil
		})
		if err != nil {
			return nil, nil, err
		}
		routes = append(routes, rc)
	}
	key := inputKey(l.Name, l.Address, l.Port, accessLogCluster(authz), chainKeys)
	lis, err := t.memo("listener/"+l.Name, key, func(p *packer) (types.Resource, error) {
		return listener(p, l, l.FusionSets(), chains, accessLogCluster(authz)), nil
	})
	return lis, routes, err
}

// routesBySet groups the routes of listener l by fusion set, in order.
func routesBySet(l *gateway.Listener) map[string][]*gateway.Route {
	out := map[string][]*gateway.Route{}
	for _, r := range l.Routes {
		out[r.FusionSet] = append(out[r.FusionSet], r)
	}
	return out
}

// hostsOf returns the hosts of routes, in order, each once.
func hostsOf(routes []*gateway.Route) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range routes {
		if !seen[r.Host] {
			seen[r.Host] = true
			out = append(out, r.Host)
		}
	}
	return out
}

// routeInputs is what a route configuration is built from.
func routeInputs(routes []*gateway.Route) []string {
	out := make([]string, 0, 3*len(routes))
	for _, r := range routes {
		out = append(out, r.Host, r.PathPrefix, r.Upstream)
	}
	return out
}

// validationKey is everything the validation secret of s is built from.
func validationKey(s *FusionSet) string {
	if s == nil {
		return ""
	}
	return inputKey(s.ID, string(s.Mode), s.IdentityURI, s.CAPEM, s.CRLPEM, s.SPKIPins)
}

func (t *Translator) serverCertSecret(l *gateway.Listener) (types.Resource, error) {
	key := inputKey(l.Name, string(l.Delivery), l.CertPEM, l.KeyPEM, l.EnvoyCertPath, l.EnvoyKeyPath)
	return t.memo("secret/"+ServerCertSecretName(l.Name), key, func(*packer) (types.Resource, error) {
		return serverCertSecret(l), nil
	})
}

type controlClusters struct{ clusters, endpoints []types.Resource }

// controlClusters are mcc-authz and, when the access log has its own
// address, mcc-authz-access-log, with their endpoints.
func (t *Translator) controlClusters(a gateway.Authz) (controlClusters, error) {
	var out controlClusters
	add := func(name string, ep gateway.Endpoint) error {
		var tlsIn gateway.UpstreamTLS
		if a.TLS != nil {
			tlsIn = *a.TLS
		}
		key := inputKey(name, a.TLS != nil, tlsIn, ep)
		c, err := t.memo("cluster/"+name, key, func(p *packer) (types.Resource, error) { return authzCluster(p, name, a), nil })
		if err != nil {
			return err
		}
		cla, err := t.memo("endpoint/"+name, key, func(*packer) (types.Resource, error) {
			return loadAssignment(name, []gateway.Endpoint{ep}), nil
		})
		if err != nil {
			return err
		}
		out.clusters = append(out.clusters, c)
		out.endpoints = append(out.endpoints, cla)
		return nil
	}
	if err := add(AuthzCluster, a.Address); err != nil {
		return out, err
	}
	if accessLogCluster(a) == AccessLogCluster {
		if err := add(AccessLogCluster, a.AccessLogAddress); err != nil {
			return out, err
		}
	}
	return out, nil
}

func (t *Translator) upstream(u *gateway.Upstream) (types.Resource, types.Resource, error) {
	name := UpstreamClusterName(u.Name)
	eps := make([]string, 0, len(u.Endpoints))
	for _, e := range u.Endpoints {
		eps = append(eps, e.IP+":"+strconv.FormatUint(uint64(e.Port), 10))
	}
	key := inputKey(u.Name, strconv.FormatBool(u.HTTP2), u.ConnectTimeout.String(), eps)
	c, err := t.memo("cluster/"+name, key, func(p *packer) (types.Resource, error) { return upstreamCluster(p, u), nil })
	if err != nil {
		return nil, nil, err
	}
	cla, err := t.memo("endpoint/"+name, key, func(*packer) (types.Resource, error) { return loadAssignment(name, u.Endpoints), nil })
	return c, cla, err
}
