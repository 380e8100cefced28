package adapter

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	ps, err := ParsePrefixes("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer ignores XFF", "198.51.100.1", []string{"203.0.113.9"}, "198.51.100.1"},
		{"no XFF", "10.1.2.3", nil, "10.1.2.3"},
		{"one hop", "10.1.2.3", []string{"203.0.113.9"}, "203.0.113.9"},
		{"right-most untrusted wins", "10.1.2.3", []string{"1.1.1.1, 203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"forged left entries ignored", "192.0.2.7", []string{"6.6.6.6,203.0.113.9"}, "203.0.113.9"},
		{"several lines are one list", "10.1.2.3", []string{"6.6.6.6", "203.0.113.9, 10.0.0.5"}, "203.0.113.9"},
		{"several lines, untrusted in the last", "10.1.2.3", []string{"6.6.6.6, 10.0.0.4", "203.0.113.9"}, "203.0.113.9"},
		{"walk crosses lines", "10.1.2.3", []string{"6.6.6.6, 203.0.113.9", "10.0.0.5"}, "203.0.113.9"},
		{"all trusted: left-most", "10.1.2.3", []string{"10.0.0.5, 10.0.0.6"}, "10.0.0.5"},
		{"hop with port", "10.1.2.3", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"ipv6 hop with port", "10.1.2.3", []string{"[2001:db9::7]:443"}, "2001:db9::7"},
		{"ipv6 hop", "2001:db8::1", []string{"2001:db8::2, 2001:db9::5"}, "2001:db9::5"},
		{"zone dropped", "10.1.2.3", []string{"fe80::1%eth0"}, "fe80::1"},
		{"garbage stops the walk", "10.1.2.3", []string{"203.0.113.9, junk, 10.0.0.6"}, "10.0.0.6"},
		{"garbage next to the peer", "10.1.2.3", []string{"203.0.113.9, unknown"}, "10.1.2.3"},
		{"empty entry stops the walk", "10.1.2.3", []string{"203.0.113.9,,10.0.0.6"}, "10.0.0.6"},
		{"empty line stops the walk", "10.1.2.3", []string{"203.0.113.9", ""}, "10.1.2.3"},
		{"mapped v4 peer", "::ffff:10.1.2.3", []string{"203.0.113.9"}, "203.0.113.9"},
		{"mapped v4 hop is trusted as v4", "10.1.2.3", []string{"203.0.113.9, ::ffff:10.0.0.9"}, "203.0.113.9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ClientIP(netip.MustParseAddr(c.peer), c.xff, ps.Contains)
			if got.String() != c.want {
				t.Fatalf("ClientIP(%s, %q) = %s, want %s", c.peer, c.xff, got, c.want)
			}
		})
	}
	if got := ClientIP(netip.MustParseAddr("10.1.2.3"), []string{"203.0.113.9"}, nil); got.String() != "10.1.2.3" {
		t.Fatalf("without trusted proxies XFF must be ignored, got %s", got)
	}
	if got := ClientIP(netip.Addr{}, []string{"203.0.113.9"}, ps.Contains); got.IsValid() {
		t.Fatalf("invalid peer: got %s", got)
	}
	// A trusted peer with no IP (a Unix socket): the walk starts at the
	// header.
	if got := WalkForwardedFor(netip.Addr{}, []string{"6.6.6.6, 203.0.113.9"}, ps.Contains); got.String() != "203.0.113.9" {
		t.Fatalf("walk from a socket peer: %s", got)
	}
	if got := WalkForwardedFor(netip.Addr{}, nil, ps.Contains); got.IsValid() {
		t.Fatalf("walk from a socket peer without XFF: %s", got)
	}
}

// A header of many trusted entries stops after MaxForwardedHops lookups.
func TestClientIPHopCap(t *testing.T) {
	ps, _ := ParsePrefixes("10.0.0.0/8")
	lookups := 0
	trusted := func(a netip.Addr) bool { lookups++; return ps.Contains(a) }
	xff := "203.0.113.9," + strings.Repeat("10.0.0.1,", 1000) + "10.0.0.2"
	got := ClientIP(netip.MustParseAddr("10.1.2.3"), []string{xff}, trusted)
	if got.String() != "10.0.0.1" {
		t.Fatalf("got %s, want the last trusted address reached", got)
	}
	if lookups > MaxForwardedHops+1 {
		t.Fatalf("%d trust lookups, want at most %d", lookups, MaxForwardedHops+1)
	}
}

func TestParsePrefixes(t *testing.T) {
	ps, err := ParsePrefixes("10.1.2.3/8, ::ffff:192.0.2.0/120, 2001:db8::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8::1/128"}
	if len(ps) != len(want) {
		t.Fatalf("got %v", ps)
	}
	for i, w := range want {
		if ps[i].String() != w {
			t.Errorf("prefix %d = %s, want %s", i, ps[i], w)
		}
	}
	if !ps.Contains(netip.MustParseAddr("::ffff:10.9.9.9")) {
		t.Error("mapped address not matched as IPv4")
	}
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.1/x", "fe80::1%eth0", "::ffff:1.2.3.4/90"} {
		if _, err := ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}
