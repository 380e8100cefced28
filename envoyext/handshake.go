package envoyext

import (
	"fmt"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"

	"github.com/mccgate/mcc/xds/gateway"
)

// handshakeRouter picks the fusion set of a handshake failure; see the
// package documentation for the order. SNI matching is the gateway section's
// own (gateway.ServerNames), so Options.SNIRoutes names match as Envoy's
// filter chains do.
type handshakeRouter struct {
	names    *gateway.ServerNames
	fallback string
}

func newHandshakeRouter(routes map[string]string, fallback string) (handshakeRouter, error) {
	names, err := gateway.NewServerNames(routes)
	if err != nil {
		return handshakeRouter{}, fmt.Errorf("handshake route: %w", err)
	}
	return handshakeRouter{names: names, fallback: fallback}, nil
}

// route returns the fusion set for an entry and how it was chosen, or "" when
// nothing routes it. onlySet is the config's single set id, if it has one.
// The custom tag and the gateway section are looked at first, by
// Service.routeHandshake.
func (r handshakeRouter) route(common *accesslogdatav3.AccessLogCommon, onlySet string) (set, how string) {
	if set, ok := r.names.Match(common.GetTlsProperties().GetTlsSniHostname()); ok {
		return set, "sni"
	}
	if r.fallback != "" {
		return r.fallback, "default"
	}
	if onlySet != "" {
		return onlySet, "only_set"
	}
	return "", ""
}
