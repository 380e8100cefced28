package envoyext

import (
	"testing"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/threat"
)

func TestHandshakeRouter(t *testing.T) {
	r, err := newHandshakeRouter(map[string]string{
		"api.bank.example":  "bank",
		"*.shop.example":    "shop",
		"*.eu.shop.example": "shop-eu",
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	entry := func(sni string, tags map[string]string) *envoytest.Connection {
		return &envoytest.Connection{RemoteAddr: "203.0.113.1:5000", SNI: sni, CustomTags: tags, FailureReason: "x"}
	}
	cases := []struct {
		name     string
		c        *envoytest.Connection
		only     string
		set, how string
	}{
		{"exact", entry("API.bank.example", nil), "", "bank", "sni"},
		{"longest wildcard", entry("a.eu.shop.example", nil), "", "shop-eu", "sni"},
		{"wildcard", entry("a.shop.example", nil), "", "shop", "sni"},
		{"wildcard needs a label", entry("shop.example", nil), "", "", ""},
		{"only set", entry("other.example", nil), "solo", "solo", "only_set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, how := r.route(envoytest.TCPEntry(*c.c).GetCommonProperties(), c.only)
			if set != c.set || how != c.how {
				t.Fatalf("route = %q by %q, want %q by %q", set, how, c.set, c.how)
			}
		})
	}
	withDefault, err := newHandshakeRouter(nil, "fallback")
	if err != nil {
		t.Fatal(err)
	}
	if set, how := withDefault.route(envoytest.TCPEntry(*entry("x.example", nil)).GetCommonProperties(), "solo"); set != "fallback" || how != "default" {
		t.Fatalf("default: got %q by %q", set, how)
	}
	for _, bad := range []map[string]string{{"a*.example": "x"}, {"*": "x"}, {"ok.example": ""}} {
		if _, err := newHandshakeRouter(bad, ""); err == nil {
			t.Errorf("route %v accepted", bad)
		}
	}
}

func TestHandshakeCause(t *testing.T) {
	cases := map[string]threat.Reason{
		envoytest.HandshakeFailure: threat.ReasonNoClientCert,
		"TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:verify cert failed: X509_verify_cert: certificate verification error at depth 0: certificate has expired:TLS_error_end": threat.ReasonCertExpired,
		"TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end":                                                                                                          threat.ReasonCertUntrusted,
		"TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end":                                                                                                               "",
	}
	for in, want := range cases {
		if got := handshakeCause(in); got != want {
			t.Errorf("handshakeCause(%.60q) = %q, want %q", in, got, want)
		}
	}
}
