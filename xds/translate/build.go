package translate

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mccgate/mcc/xds/gateway"
)

// Build translates the input into one set of resources per node group,
// keyed by the group's Envoy node cluster.
//
// A group gets its listeners and exactly what they reference (route
// configurations, clusters, endpoints, secrets), nothing more: in ADS mode
// the snapshot cache answers a request for named resources only when the
// node asked for every resource of that type in the snapshot, so a secret of
// a fusion set the group does not serve would stall the group's SDS.
func Build(in Input) (map[string]Resources, error) {
	g := in.Gateway
	if g == nil {
		return nil, fmt.Errorf("no gateway section")
	}
	p := &packer{}
	// Shared across groups: each listener, route configuration and secret
	// is built once; groups hold pointers to the same immutable protos.
	listeners := map[string]types.Resource{}
	routes := map[string]types.Resource{}
	validation := map[string]types.Resource{}
	for _, l := range g.Listeners {
		lis, err := listener(p, l, in.Sets, g.Authz)
		if err != nil {
			return nil, err
		}
		listeners[l.Name] = lis
		routes[l.Name] = routeConfig(p, l)
		for _, id := range l.FusionSets() {
			if validation[id] != nil {
				continue
			}
			sec, err := validationSecret(in.Sets[id])
			if err != nil {
				return nil, err
			}
			validation[id] = sec
		}
	}
	if p.err != nil {
		return nil, p.err
	}

	out := make(map[string]Resources, len(g.NodeGroups))
	for _, ng := range g.NodeGroups {
		res := Resources{}
		add := func(typ resourcev3.Type, r types.Resource) { res[typ] = append(res[typ], r) }
		setSeen := map[string]bool{}
		upstreamSeen := map[string]bool{}
		var upstreams []*gateway.Upstream
		for _, name := range ng.Listeners {
			l := g.Listener(name)
			if l == nil {
				return nil, fmt.Errorf("node group %q: unknown listener %q", ng.Cluster, name)
			}
			add(resourcev3.ListenerType, listeners[name])
			add(resourcev3.RouteType, routes[name])
			add(resourcev3.SecretType, serverCertSecret(l))
			for _, id := range l.FusionSets() {
				if !setSeen[id] {
					setSeen[id] = true
					add(resourcev3.SecretType, validation[id])
				}
			}
			for _, r := range l.Routes {
				if !upstreamSeen[r.Upstream] {
					upstreamSeen[r.Upstream] = true
					u := g.Upstream(r.Upstream)
					if u == nil {
						return nil, fmt.Errorf("listener %q: unknown upstream %q", name, r.Upstream)
					}
					upstreams = append(upstreams, u)
				}
			}
		}
		add(resourcev3.ClusterType, authzCluster(p, AuthzCluster, g.Authz))
		add(resourcev3.EndpointType, loadAssignment(AuthzCluster, []gateway.Endpoint{g.Authz.Address}))
		if accessLogCluster(g.Authz) == AccessLogCluster {
			add(resourcev3.ClusterType, authzCluster(p, AccessLogCluster, g.Authz))
			add(resourcev3.EndpointType, loadAssignment(AccessLogCluster, []gateway.Endpoint{g.Authz.AccessLogAddress}))
		}
		for _, u := range upstreams {
			add(resourcev3.ClusterType, upstreamCluster(p, u))
			add(resourcev3.EndpointType, loadAssignment(UpstreamClusterName(u.Name), u.Endpoints))
		}
		out[ng.Cluster] = res
	}
	return out, p.err
}
