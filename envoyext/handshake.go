package envoyext

import (
	"fmt"
	"sort"
	"strings"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
)

// handshakeRouter picks the fusion set of a handshake failure; see the
// package documentation for the order.
type handshakeRouter struct {
	exact    map[string]string
	wildcard []wildcardRoute // longest suffix first, as Envoy prefers
	fallback string
}

type wildcardRoute struct {
	suffix string // ".example.com" for "*.example.com"
	set    string
}

func newHandshakeRouter(routes map[string]string, fallback string) (handshakeRouter, error) {
	r := handshakeRouter{exact: map[string]string{}, fallback: fallback}
	for name, set := range routes {
		name = strings.ToLower(strings.TrimSpace(name))
		switch {
		case set == "":
			return r, fmt.Errorf("handshake route %q: empty fusion set", name)
		case strings.HasPrefix(name, "*."):
			r.wildcard = append(r.wildcard, wildcardRoute{suffix: name[1:], set: set})
		case strings.Contains(name, "*") || name == "":
			return r, fmt.Errorf("handshake route %q: only exact names and \"*.\" wildcards are allowed", name)
		default:
			r.exact[name] = set
		}
	}
	sort.Slice(r.wildcard, func(i, j int) bool {
		if len(r.wildcard[i].suffix) != len(r.wildcard[j].suffix) {
			return len(r.wildcard[i].suffix) > len(r.wildcard[j].suffix)
		}
		return r.wildcard[i].suffix < r.wildcard[j].suffix
	})
	return r, nil
}

// route returns the fusion set for an entry and how it was chosen, or "" when
// nothing routes it. onlySet is the config's single set id, if it has one.
// The custom tag and the gateway section are looked at first, by
// Service.routeHandshake.
func (r handshakeRouter) route(common *accesslogdatav3.AccessLogCommon, onlySet string) (set, how string) {
	if sni := strings.ToLower(common.GetTlsProperties().GetTlsSniHostname()); sni != "" {
		if set, ok := r.exact[sni]; ok {
			return set, "sni"
		}
		for _, w := range r.wildcard {
			// "*.example.com" matches "a.example.com", not "example.com".
			if len(sni) > len(w.suffix) && strings.HasSuffix(sni, w.suffix) {
				return w.set, "sni"
			}
		}
	}
	if r.fallback != "" {
		return r.fallback, "default"
	}
	if onlySet != "" {
		return onlySet, "only_set"
	}
	return "", ""
}
