package envoyext

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses a comma-separated list of CIDRs or bare IP
// addresses ("10.0.0.0/8,192.0.2.7") as --trusted-proxies takes it.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// proxySet answers "is this address one of our trusted proxies".
type proxySet []netip.Prefix

func (ps proxySet) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP returns the client address for scoring and events. source is the
// address Envoy reports as the downstream peer. When that peer is a trusted
// proxy, X-Forwarded-For is walked from the right and the first address that
// is not a trusted proxy wins: every hop to its right was appended by a proxy
// we trust, while anything to its left was written by the client and can be
// forged. If every hop is trusted, the left-most one is the best we know.
func (ps proxySet) clientIP(source, xff string) string {
	if len(ps) == 0 || xff == "" {
		return source
	}
	src, err := netip.ParseAddr(source)
	if err != nil || !ps.trusted(src) {
		return source
	}
	best := source
	for xff != "" {
		var hop string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			hop, xff = xff[i+1:], xff[:i]
		} else {
			hop, xff = xff, ""
		}
		a, ok := parseHop(strings.TrimSpace(hop))
		if !ok {
			// A hop we cannot read was not written by a proxy we trust
			// to write well-formed values: stop at the last good one.
			return best
		}
		if !ps.trusted(a) {
			return a.String()
		}
		best = a.String()
	}
	return best
}

// parseHop reads one X-Forwarded-For element: an IP, optionally with a port
// ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
