package gateway

import "strings"

// FusionSetForServerName returns the fusion set whose TLS filter chain Envoy
// selects on listener l for the SNI sni: an exact host first, then the most
// specific "*." wildcard, as Envoy's server_names matching does. envoyext uses
// it to attribute a handshake failure from the listener access log (which
// carries the SNI but not the filter chain) to a fusion set.
func (l *Listener) FusionSetForServerName(sni string) (string, bool) {
	sni = strings.ToLower(strings.TrimSuffix(sni, "."))
	for _, r := range l.Routes {
		if r.Host == sni {
			return r.FusionSet, true
		}
	}
	// "a.b.example.com" tries "*.b.example.com", then "*.example.com", ...
	for rest := sni; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return "", false
		}
		rest = rest[i+1:]
		for _, r := range l.Routes {
			if r.Host == "*."+rest {
				return r.FusionSet, true
			}
		}
	}
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
