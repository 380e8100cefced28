package gateway

import (
	"fmt"
	"strings"
)

// ServerNames maps TLS server names to fusion sets the way Envoy selects a
// filter chain by server_names: an exact name first, then the most specific
// "*." wildcard ("*.example.com" matches "a.example.com" and
// "a.b.example.com", not "example.com"). It is the one SNI matcher of mcc:
// listeners of the gateway section use it, and so does envoyext for its
// Options.SNIRoutes table, to attribute a handshake failure from the listener
// access log (which carries the SNI but not the filter chain) to a fusion set.
type ServerNames struct {
	sets map[string]string // lower-case name or "*.suffix" -> fusion set
}

// NewServerNames builds the matcher from names (exact DNS names or "*."
// wildcards, any case) to fusion set ids. A name that is no DNS name, or an
// empty set id, is an error.
func NewServerNames(routes map[string]string) (*ServerNames, error) {
	m := &ServerNames{sets: make(map[string]string, len(routes))}
	for name, set := range routes {
		n := normalizeServerName(name)
		if err := checkHost(n); err != nil {
			return nil, fmt.Errorf("server name %q: %w", name, err)
		}
		if set == "" {
			return nil, fmt.Errorf("server name %q: empty fusion set", name)
		}
		m.sets[n] = set
	}
	return m, nil
}

// Match returns the fusion set for the server name sni.
func (m *ServerNames) Match(sni string) (string, bool) {
	if m == nil || len(m.sets) == 0 {
		return "", false
	}
	sni = normalizeServerName(sni)
	if sni == "" {
		return "", false
	}
	if set, ok := m.sets[sni]; ok {
		return set, true
	}
	// "a.b.example.com" tries "*.b.example.com", then "*.example.com", ...
	for rest := sni; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return "", false
		}
		rest = rest[i+1:]
		if set, ok := m.sets["*."+rest]; ok {
			return set, true
		}
	}
}

// normalizeServerName is how names compare: DNS names are case-insensitive,
// and a fully qualified name's trailing dot names the same host.
func normalizeServerName(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// serverNames is the listener's matcher over its routes (the first route of
// a host decides; Decode refuses a host routed to two sets).
func (l *Listener) serverNames() *ServerNames {
	m := &ServerNames{sets: make(map[string]string, len(l.Routes))}
	for _, r := range l.Routes {
		if h := normalizeServerName(r.Host); h != "" && r.FusionSet != "" {
			if _, dup := m.sets[h]; !dup {
				m.sets[h] = r.FusionSet
			}
		}
	}
	return m
}

// FusionSetForServerName returns the fusion set whose TLS filter chain Envoy
// selects on listener l for the SNI sni (see ServerNames).
func (l *Listener) FusionSetForServerName(sni string) (string, bool) {
	if l.sni == nil {
		// A Listener built by hand, not by Decode.
		return l.serverNames().Match(sni)
	}
	return l.sni.Match(sni)
}

// FusionSetForConnection is FusionSetForServerName on the listener bound to
// localPort (the access log's downstream local address).
func (g *Gateway) FusionSetForConnection(localPort uint32, sni string) (string, bool) {
	for _, l := range g.Listeners {
		if l.Port == localPort {
			if id, ok := l.FusionSetForServerName(sni); ok {
				return id, true
			}
		}
	}
	return "", false
}
