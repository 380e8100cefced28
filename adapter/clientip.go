package adapter

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxForwardedHops bounds the X-Forwarded-For walk: after this many trusted
// hops the walk stops, and the last address reached is the client. No real
// deployment chains this many proxies we trust; the bound keeps a header of
// thousands of entries from costing a lookup each.
const MaxForwardedHops = 32

// Prefixes is a set of trusted proxy ranges.
type Prefixes []netip.Prefix

// Contains reports whether a is in one of the ranges. IPv4-mapped IPv6
// addresses are compared as IPv4.
func (ps Prefixes) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a comma-separated list of CIDRs or bare IP addresses
// ("10.0.0.0/8, 192.0.2.7"), as `mcc authz --trusted-proxies` takes it. A bare
// address is a /32 (or /128) range.
func ParsePrefixes(s string) (Prefixes, error) {
	var out Prefixes
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
			if p.Addr().Is4In6() {
				// ::ffff:10.0.0.0/104 means 10.0.0.0/8: addresses are
				// unmapped before they are compared.
				bits := p.Bits() - 96
				if bits < 0 {
					return nil, fmt.Errorf("trusted proxy %q: an IPv4-mapped range needs at least /96", f)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), bits)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		if a.Zone() != "" {
			return nil, fmt.Errorf("trusted proxy %q: an address with a zone cannot be a range", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// ClientIP returns the address of the client, the one that gets scored,
// banned and reported. peer is the address of the connection the gateway
// accepted; xff are the X-Forwarded-For header lines in the order received
// (each may hold several comma-separated entries); trusted reports whether an
// address is a trusted proxy (nil: none is).
//
// The rule, the same in every gateway:
//
//   - A peer that is not a trusted proxy is the client: X-Forwarded-For is
//     ignored, whatever it says.
//   - Otherwise X-Forwarded-For (all lines, joined in order, split at commas)
//     is walked from the right. Each proxy appends the address it received
//     the request from, so the entries to the right of the first untrusted
//     one were written by proxies we trust, and that one is the client as
//     the outermost trusted proxy saw it. Everything to its left was written
//     by the client and is ignored.
//   - The walk stops early, and the last address it reached (the peer, or a
//     trusted entry) is the client, when an entry is not an IP address
//     (empty, "unknown", a name), when the header is exhausted with every
//     entry trusted, or after MaxForwardedHops entries. A malformed entry
//     was not written by a proxy we trust, so nothing to its left can be
//     believed; skipping it would let the client choose the address.
//   - Entries may carry a port ("192.0.2.1:4711", "[2001:db8::1]:4711")
//     or an IPv6 zone; both are dropped. IPv4-mapped IPv6 is unmapped.
//
// An invalid peer (for example a Unix socket) is returned as is when it is
// not trusted; see WalkForwardedFor for a peer known to be trusted.
func ClientIP(peer netip.Addr, xff []string, trusted func(netip.Addr) bool) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if trusted == nil || !peer.IsValid() || !trusted(peer) {
		return peer
	}
	return WalkForwardedFor(peer, xff, trusted)
}

// WalkForwardedFor is ClientIP for a peer already known to be a trusted
// proxy: it walks xff from the right as ClientIP describes and returns the
// first untrusted entry, or the last address reached, starting from last
// (which may be the zero Addr when the peer has no IP address, such as a
// trusted Unix socket; the zero Addr is then returned if no entry is read).
func WalkForwardedFor(last netip.Addr, xff []string, trusted func(netip.Addr) bool) netip.Addr {
	hops := 0
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for {
			var entry string
			j := strings.LastIndexByte(line, ',')
			if j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry = line
			}
			a, ok := ParseForwardedAddr(entry)
			if !ok {
				return last
			}
			if trusted == nil || !trusted(a) {
				return a
			}
			last = a
			if hops++; hops >= MaxForwardedHops {
				return last
			}
			if j < 0 {
				break
			}
		}
	}
	return last
}

// ParseForwardedAddr reads one X-Forwarded-For entry: an IP address,
// optionally with a port or an IPv6 zone, surrounded by optional spaces.
// The address is returned unmapped and without zone.
func ParseForwardedAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}
