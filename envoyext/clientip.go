package envoyext

import (
	"net/netip"

	"github.com/mccgate/mcc/adapter"
)

// ParseTrustedProxies parses a comma-separated list of CIDRs or bare IP
// addresses ("10.0.0.0/8,192.0.2.7") as --trusted-proxies takes it.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	return adapter.ParsePrefixes(s)
}

// proxySet answers "is this address one of our trusted proxies".
type proxySet []netip.Prefix

func (ps proxySet) trusted(a netip.Addr) bool { return adapter.Prefixes(ps).Contains(a) }

// clientIP returns the client address for scoring and events, by the rule
// both gateways share (adapter.ClientIP): source is the address Envoy
// reports as the downstream peer; when it is a trusted proxy, X-Forwarded-For
// is walked from the right and the first address that is not a trusted proxy
// wins. Envoy hands ext_authz a header sent on several lines as one value
// joined with commas, which the rule reads the same way as separate lines.
func (ps proxySet) clientIP(source, xff string) string {
	src, err := netip.ParseAddr(source)
	if err != nil {
		// Not an IP (a pipe, or nothing): nothing to walk from.
		return source
	}
	var lines []string
	if xff != "" {
		lines = []string{xff}
	}
	var trusted func(netip.Addr) bool
	if len(ps) > 0 {
		trusted = ps.trusted
	}
	return adapter.ClientIP(src, lines, trusted).String()
}
