package envoyext

import (
	"fmt"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/threat"
)

// TestGenuineCertificateNotBannedOverGRPC is issue 9 point 3 through the
// real ext_authz listener: with the app bundle, an attacker sends the
// build's genuine certificate with a broken extra certificate, or over the
// chain depth cap, from three addresses. Before, that banned the certificate
// itself (FAIL_SAFE_ACTIVE for every genuine user); now only the attacking
// addresses are banned, and a genuine user on a clean address passes.
func TestGenuineCertificateNotBannedOverGRPC(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	h := startHarness(t, p.loadConfig(t, fmt.Sprintf(`fusion_sets:
  - id: bank
    trusted_ca: {file: %q}
    app_id: bank-app
    mode: defense
    threat_events: true
    fail_safe: {threshold: 10, window: 10m, duration: 10m}
    device_headers: {deviceID: X-Device-Id}
`, p.caFile())), nil)
	genuine := p.good.Raw
	ca := p.ca.Cert.Raw
	attacks := map[string][][]byte{
		"broken extra certificate": {genuine, []byte("\x30\x03\x02\x01\x01")},
		"chain over the depth cap": {genuine, ca, ca, ca, ca},
	}
	i := 0
	for name, chain := range attacks {
		for j := range 3 {
			ip := fmt.Sprintf("198.51.100.%d", 10*i+j+1)
			resp := h.check(envoytest.CheckRequest(envoytest.Check{
				FusionSet: "bank", Chain: chain,
				SourceAddr: ip + ":40000", DestAddr: "192.0.2.1:443",
				SNI: "api.bank.example", Host: "api.bank.example", Method: "GET", Path: "/",
				Headers: map[string]string{"x-device-id": fmt.Sprintf("bot-%d-%d", i, j)},
			}))
			if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
				t.Fatalf("%s from %s: %v, want a deny", name, ip, resp.GetStatus())
			}
		}
		i++
		resp := h.check(envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: genuine,
			SourceAddr: "203.0.113.77:40000", DestAddr: "192.0.2.1:443",
			SNI: "api.bank.example", Host: "api.bank.example", Method: "GET", Path: "/",
			Headers: map[string]string{"x-device-id": "genuine-user"},
		}))
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("after %q the genuine certificate from a clean address: %v (message %q), want OK",
				name, resp.GetStatus(), resp.GetStatus().GetMessage())
		}
	}
	// The attackers' own addresses are banned.
	resp := h.check(goodCheck(p, "198.51.100.1", "attacker-again"))
	if got := resp.GetStatus().GetMessage(); got != string(threat.ReasonFailSafeActive) {
		t.Fatalf("attacking address with a good certificate: %q, want FAIL_SAFE_ACTIVE", got)
	}
}

// TestIPv6PrefixBanOverGRPC is issue 9 point 10 through the real ext_authz
// listener: Envoy hands over the full IPv6 address, the engine scores its
// /64, so rotating within the /64 does not escape the ban.
func TestIPv6PrefixBanOverGRPC(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	h := startHarness(t, p.loadConfig(t, fmt.Sprintf(`fusion_sets:
  - id: bank
    trusted_ca: {file: %q}
    app_id: bank-app
    mode: defense
    threat_events: true
    fail_safe: {threshold: 10, window: 10m, duration: 10m}
`, p.caFile())), nil)
	// No certificate (NO_CLIENT_CERT scores 10): the /64 is banned.
	resp := h.check(envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", SourceAddr: "[2001:db8:1:2::1]:40000", DestAddr: "192.0.2.1:443",
		SNI: "api.bank.example", Host: "api.bank.example", Method: "GET", Path: "/",
	}))
	if got := resp.GetStatus().GetMessage(); got != string(threat.ReasonNoClientCert) {
		t.Fatalf("no certificate: %q", got)
	}
	good := func(addr string) *authv3.CheckRequest {
		return envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: p.good.Raw, SourceAddr: addr, DestAddr: "192.0.2.1:443",
			SNI: "api.bank.example", Host: "api.bank.example", Method: "GET", Path: "/",
		})
	}
	if got := h.check(good("[2001:db8:1:2:ffff::9]:40001")).GetStatus().GetMessage(); got != string(threat.ReasonFailSafeActive) {
		t.Fatalf("another address of the same /64: %q, want FAIL_SAFE_ACTIVE", got)
	}
	if resp := h.check(good("[2001:db8:1:3::1]:40002")); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("another /64: %v", resp.GetStatus())
	}
}
