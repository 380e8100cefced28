package translate

import (
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mccgate/mcc/xds/gateway"
)

// routeConfig builds mcc-routes-<listener>/<set>, the routes of fusion set
// id on a listener: a virtual host per host, a route per path prefix
// (longest first, as Envoy takes the first match), each naming the fusion
// set for ext_authz.
//
// Only the set's own filter chain uses it. A client that completes the
// handshake of set A and then sends "Host: <a host of set B>" finds no
// virtual host and gets 404 from Envoy: the certificate checked in the
// handshake and the fusion set that ext_authz applies are always the same.
func routeConfig(p *packer, listener, id string, routes []*gateway.Route) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: RouteConfigName(listener, id)}
	byHost := map[string]*routev3.VirtualHost{}
	hostRoutes := map[string][]*gateway.Route{}
	for _, r := range routes {
		if byHost[r.Host] == nil {
			vh := &routev3.VirtualHost{Name: "mcc-host-" + r.Host, Domains: []string{r.Host}}
			byHost[r.Host] = vh
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
		hostRoutes[r.Host] = append(hostRoutes[r.Host], r)
	}
	for _, vh := range rc.VirtualHosts {
		routes := hostRoutes[vh.Domains[0]]
		sort.SliceStable(routes, func(i, j int) bool { return len(routes[i].PathPrefix) > len(routes[j].PathPrefix) })
		for _, r := range routes {
			vh.Routes = append(vh.Routes, &routev3.Route{
				Name:  vh.Domains[0] + r.PathPrefix,
				Match: routeMatch(r.PathPrefix),
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: UpstreamClusterName(r.Upstream)},
				}},
				TypedPerFilterConfig: map[string]*anypb.Any{
					wellknown.HTTPExternalAuthorization: p.any(ExtAuthzPerRoute(r.FusionSet)),
				},
			})
		}
	}
	return rc
}

// routeMatch matches a prefix on segment boundaries: "/v1" takes "/v1" and
// "/v1/x" but not "/v10". A prefix ending in "/" (and "/" itself) is a
// plain prefix.
func routeMatch(prefix string) *routev3.RouteMatch {
	if strings.HasSuffix(prefix, "/") {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}}
	}
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix}}
}
