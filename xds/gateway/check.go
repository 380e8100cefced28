package gateway

import (
	"fmt"
	"strconv"
)

// crossCheck finds what no single field shows: duplicate names, references
// to things that do not exist, and combinations Envoy would refuse (two
// filter chains for one server name, two listeners on one port).
func (d *decoder) crossCheck(g *Gateway) {
	listeners := map[string]*Listener{}
	for i, l := range g.Listeners {
		if l.Name == "" {
			continue
		}
		if _, dup := listeners[l.Name]; dup {
			d.addf(valueOf(d.listenerLines[l], "name"), fmt.Sprintf("gateway.listeners[%d].name", i), fmt.Sprintf("duplicate listener name %q", l.Name))
			continue
		}
		listeners[l.Name] = l
	}
	upstreams := map[string]*Upstream{}
	for i, u := range g.Upstreams {
		if u.Name == "" {
			continue
		}
		if _, dup := upstreams[u.Name]; dup {
			d.addf(valueOf(d.upstreamLines[u], "name"), fmt.Sprintf("gateway.upstreams[%d].name", i), fmt.Sprintf("duplicate upstream name %q", u.Name))
			continue
		}
		upstreams[u.Name] = u
	}

	usedUpstreams := map[string]bool{}
	for i, l := range g.Listeners {
		type routeKey struct{ host, prefix string }
		routes := map[routeKey]bool{}
		hostSet := map[string]string{}
		for j, r := range l.Routes {
			rn := d.routeLines[r]
			p := fmt.Sprintf("gateway.listeners[%d].routes[%d]", i, j)
			if r.Upstream != "" {
				if upstreams[r.Upstream] == nil {
					d.addf(rn.upstream, p+".upstream", fmt.Sprintf("unknown upstream %q (not in gateway.upstreams)", r.Upstream))
				}
				usedUpstreams[r.Upstream] = true
			}
			if r.Host == "" {
				continue
			}
			k := routeKey{r.Host, r.PathPrefix}
			if routes[k] {
				d.addf(rn.item, p, fmt.Sprintf("duplicate route for host %q and path_prefix %q on listener %q", r.Host, r.PathPrefix, l.Name))
			}
			routes[k] = true
			// One TLS filter chain per fusion set is matched by SNI, so a
			// server name can belong to one fusion set only.
			if prev, ok := hostSet[r.Host]; ok && r.FusionSet != "" && prev != r.FusionSet {
				d.addf(rn.fusionSet, p+".fusion_set", fmt.Sprintf("host %q is already guarded by fusion set %q on listener %q: the TLS handshake (matched by SNI) can only use one fusion set per host", r.Host, prev, l.Name))
			} else if r.FusionSet != "" {
				hostSet[r.Host] = r.FusionSet
			}
		}
	}
	for i, u := range g.Upstreams {
		if u.Name != "" && !usedUpstreams[u.Name] {
			d.addf(valueOf(d.upstreamLines[u], "name"), fmt.Sprintf("gateway.upstreams[%d].name", i), fmt.Sprintf("upstream %q is used by no route", u.Name))
		}
	}

	clusters := map[string]bool{}
	grouped := map[string]bool{}
	for i, ng := range g.NodeGroups {
		gn := d.groupLines[ng]
		p := fmt.Sprintf("gateway.node_groups[%d]", i)
		if ng.Cluster != "" {
			if clusters[ng.Cluster] {
				d.addf(valueOf(gn.item, "cluster"), p+".cluster", fmt.Sprintf("duplicate node group for cluster %q", ng.Cluster))
			}
			clusters[ng.Cluster] = true
		}
		inGroup := map[string]bool{}
		ports := map[uint32]*Listener{}
		for j, name := range ng.Listeners {
			lp := p + ".listeners[" + strconv.Itoa(j) + "]"
			node := gn.listeners[j]
			l := listeners[name]
			if l == nil {
				d.addf(node, lp, fmt.Sprintf("unknown listener %q (not in gateway.listeners)", name))
				continue
			}
			if inGroup[name] {
				d.addf(node, lp, fmt.Sprintf("listener %q listed twice", name))
				continue
			}
			inGroup[name] = true
			grouped[name] = true
			if other := ports[l.Port]; other != nil && l.Port != 0 && addressesOverlap(other.Address, l.Address) {
				d.addf(node, lp, fmt.Sprintf("listeners %q and %q both bind %s:%d on the same Envoy", other.Name, l.Name, l.Address, l.Port))
				continue
			}
			ports[l.Port] = l
		}
	}
	for i, l := range g.Listeners {
		if l.Name != "" && !grouped[l.Name] && len(g.NodeGroups) > 0 {
			d.addf(valueOf(d.listenerLines[l], "name"), fmt.Sprintf("gateway.listeners[%d].name", i), fmt.Sprintf("listener %q is in no node group, so no Envoy would get it", l.Name))
		}
	}
}

// addressesOverlap reports whether two bind addresses on one port clash: the
// same address, or either one the wildcard.
func addressesOverlap(a, b string) bool {
	wild := func(s string) bool { return s == "0.0.0.0" || s == "::" }
	return a == b || wild(a) || wild(b)
}
