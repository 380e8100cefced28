package envoyext

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/envoyext/envoytest"
)

// mcc authz routes handshake failures by the gateway section without ever
// reading the listeners' key material: with the key file absent and the
// certificate unreadable, the section still routes (mcc xds, which sends
// them to Envoy, is what reads them).
func TestGatewayRoutingReadsNoListenerKeys(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	certFile := filepath.Join(p.dir, "edge.pem")
	if err := os.WriteFile(certFile, []byte("not read"), 0); err != nil {
		t.Fatal(err)
	}
	cfg := p.loadConfig(t, fmt.Sprintf(`fusion_sets:
  - id: bank
    trusted_ca: {file: %[1]q}
    app_id: bank-app
    mode: defense
    threat_events: true
  - id: shop
    trusted_ca: {file: %[1]q}
    app_id: shop-app
    mode: defense
    threat_events: true
gateway:
  authz:
    address: 127.0.0.1:9001
  listeners:
    - name: edge
      port: 8443
      certificate: {cert_file: edge.pem, key_file: absent-key.pem}
      routes:
        - {host: "*.shop.example", fusion_set: shop, upstream: api}
  upstreams:
    - {name: api, endpoints: [127.0.0.1:8081]}
  node_groups:
    - {cluster: edge, listeners: [edge]}
`, p.caFile()))
	h := startHarness(t, cfg, func(o *Options) { o.HandshakeFusionSet = "bank" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := h.als.StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := envoytest.Connection{RemoteAddr: "198.51.100.5:1234", LocalAddr: "192.0.2.1:8443", SNI: "m.shop.example",
		FailureReason: "TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:TLS_error_end"}
	if err := stream.Send(envoytest.TCPLogs("envoy-1", HandshakeLogName, envoytest.TCPEntry(c))); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	ev := h.events()
	if len(ev) != 1 || ev[0].FusionSet != "shop" || ev[0].ReasonData["routedBy"] != "gateway" {
		for _, e := range ev {
			t.Logf("event: set %s routed by %v", e.FusionSet, e.ReasonData["routedBy"])
		}
		t.Fatalf("got %d events, want one routed to shop by the gateway section", len(ev))
	}
}
