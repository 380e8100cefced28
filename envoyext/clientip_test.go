package envoyext

import "testing"

// TestClientIP: envoyext applies the shared rule (adapter.ClientIP, tested
// in full there) to Envoy's source address and the x-forwarded-for value
// ext_authz receives.
func TestClientIP(t *testing.T) {
	ps, err := ParseTrustedProxies("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, source, xff, want string
	}{
		{"untrusted source ignores XFF", "198.51.100.1", "203.0.113.9", "198.51.100.1"},
		{"no XFF", "10.1.2.3", "", "10.1.2.3"},
		{"one hop", "10.1.2.3", "203.0.113.9", "203.0.113.9"},
		{"right-most untrusted wins", "10.1.2.3", "1.1.1.1, 203.0.113.9, 10.9.9.9", "203.0.113.9"},
		{"forged left entries ignored", "192.0.2.7", "6.6.6.6,203.0.113.9", "203.0.113.9"},
		{"all trusted: left-most", "10.1.2.3", "10.0.0.5, 10.0.0.6", "10.0.0.5"},
		{"hop with port", "10.1.2.3", "203.0.113.9:4711", "203.0.113.9"},
		{"ipv6 hop", "2001:db8::1", "2001:db8::2, 2001:db9::5", "2001:db9::5"},
		{"garbage stops the walk", "10.1.2.3", "203.0.113.9, junk, 10.0.0.6", "10.0.0.6"},
		{"mapped v4 source", "::ffff:10.1.2.3", "203.0.113.9", "203.0.113.9"},
		{"mapped v4 untrusted source", "::ffff:198.51.100.1", "203.0.113.9", "198.51.100.1"},
		{"source not an IP", "", "203.0.113.9", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := proxySet(ps).clientIP(c.source, c.xff); got != c.want {
				t.Fatalf("clientIP(%q, %q) = %q, want %q", c.source, c.xff, got, c.want)
			}
		})
	}
	if got := proxySet(nil).clientIP("198.51.100.1", "203.0.113.9"); got != "198.51.100.1" {
		t.Fatalf("without trusted proxies XFF must be ignored, got %q", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.1/x"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted", bad)
		}
	}
}
