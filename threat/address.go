package threat

import "net/netip"

// maxRawAddress caps a client address that is not an IP address (a gateway
// bug, or a value a client controls) used verbatim as a subject.
const maxRawAddress = 64

// AddressKey returns the subject value under which the client address raw is
// scored and banned: an IPv4 address aggregated to its /v4 prefix and an IPv6
// address to its /v6 prefix. A full-length prefix is the bare address
// ("192.0.2.7", "2001:db8::1"), which is also what stores held before
// prefixes existed; a shorter one is the masked prefix ("192.0.2.0/24",
// "2001:db8:1:2::/64"). An IPv4-mapped IPv6 address counts as IPv4 and a zone
// is dropped. A value that is not an IP address (nor ip:port) is kept as is,
// cut to 64 bytes. v4 and v6 out of range mean the defaults.
func AddressKey(raw string, v4, v6 int) string {
	a, err := netip.ParseAddr(raw)
	if err != nil {
		ap, perr := netip.ParseAddrPort(raw)
		if perr != nil {
			if raw == "" {
				return ""
			}
			if len(raw) > maxRawAddress {
				raw = raw[:maxRawAddress]
			}
			return raw
		}
		a, raw = ap.Addr(), ""
	}
	if a.Is4In6() || a.Zone() != "" {
		a, raw = a.Unmap().WithZone(""), ""
	}
	p, full := addressPrefix(a, v4, v6)
	if full {
		// A canonical IPv4 address or an IPv6 address spelled the way
		// netip does is returned as is: no allocation on the hot path.
		if raw != "" && (a.Is4() || a.String() == raw) {
			return raw
		}
		return p.Addr().String()
	}
	return p.String()
}

// addressPrefix returns a's prefix of the configured length, and whether it
// is the whole address.
func addressPrefix(a netip.Addr, v4, v6 int) (netip.Prefix, bool) {
	a = a.Unmap().WithZone("")
	bits := v6
	if a.Is4() {
		bits = v4
		if bits <= 0 || bits > 32 {
			bits = DefaultIPv4Prefix
		}
	} else if bits <= 0 || bits > 128 {
		bits = DefaultIPv6Prefix
	}
	p, _ := a.Prefix(bits)
	return p, bits == a.BitLen()
}

// ParseAddressValue parses an address subject value or an operator's
// --address: an IP address (a full-length prefix) or a prefix in CIDR
// notation. ok is false for anything else.
func ParseAddressValue(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// SubjectMatches reports whether a stored subject value of kind k is named
// by an operator's query: for addresses, when the two addresses or prefixes
// overlap (an address inside a banned /64 names that /64, a /48 names every
// banned address or prefix inside it); otherwise when they are equal.
func SubjectMatches(k SubjectKind, stored, query string) bool {
	if stored == query {
		return true
	}
	if k != SubjectAddress {
		return false
	}
	sp, ok1 := ParseAddressValue(stored)
	qp, ok2 := ParseAddressValue(query)
	return ok1 && ok2 && sp.Overlaps(qp)
}
