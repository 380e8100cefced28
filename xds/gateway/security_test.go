package gateway_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/xds/gateway"
)

// hardened is goodSection with mTLS to mcc authz, a separate access-log
// address, file delivery of the certificate, and node group peers.
func hardened(t *testing.T) string {
	t.Helper()
	text := strings.Replace(goodSection, "    address: 127.0.0.1:9001\n", `    address: 127.0.0.1:9001
    access_log_address: 127.0.0.1:9002
    tls:
      ca_file: control/ca.pem
      cert_file: /etc/envoy/envoy.pem
      key_file: /etc/envoy/envoy-key.pem
      server_name: localhost
`, 1)
	text = strings.Replace(text, "        key_file: edge-key.pem\n", `        key_file: /nonexistent/edge-key.pem
        delivery: file
        envoy_cert_path: /etc/envoy/tls/edge.pem
`, 1)
	return strings.Replace(text, "      listeners: [edge]\n", "      listeners: [edge]\n      peers: [\"spiffe://mcc/envoy/edge-eu\", envoy-edge.example.com]\n", 1)
}

func TestDecodeHardened(t *testing.T) {
	dir := setup(t)
	g, err := decode(t, dir, hardened(t))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	a := g.Authz
	if a.AccessLogAddress != (gateway.Endpoint{IP: "127.0.0.1", Port: 9002}) {
		t.Errorf("access_log_address = %+v", a.AccessLogAddress)
	}
	want := gateway.UpstreamTLS{CAFile: filepath.Join(dir, "control/ca.pem"), CertFile: "/etc/envoy/envoy.pem", KeyFile: "/etc/envoy/envoy-key.pem", ServerName: "localhost"}
	if a.TLS == nil || *a.TLS != want {
		t.Errorf("authz tls = %+v, want %+v", a.TLS, want)
	}
	l := g.Listener("edge")
	// File delivery: the key is never read (its path does not even exist
	// here), and the certificate is not read either.
	if l.Delivery != gateway.DeliveryFile || l.KeyPEM != nil || l.CertPEM != nil {
		t.Errorf("listener read files in file delivery: delivery=%s key=%d cert=%d bytes", l.Delivery, len(l.KeyPEM), len(l.CertPEM))
	}
	if l.EnvoyCertPath != "/etc/envoy/tls/edge.pem" || l.EnvoyKeyPath != "/nonexistent/edge-key.pem" {
		t.Errorf("envoy paths = %q, %q", l.EnvoyCertPath, l.EnvoyKeyPath)
	}
	if files := g.Files(); len(files) != 0 {
		t.Errorf("file delivery: watched files %v, want none (mcc xds does not read them)", files)
	}
	if p := g.NodeGroups[0].Peers; len(p) != 2 || p[0] != "spiffe://mcc/envoy/edge-eu" || p[1] != "envoy-edge.example.com" {
		t.Errorf("peers = %v", p)
	}
}

func TestDecodeHardenedMistakes(t *testing.T) {
	dir := setup(t)
	tests := []struct {
		name, old, new, field, msg string
	}{
		{"bad delivery", "delivery: file", "delivery: sds", "gateway.listeners[0].certificate.delivery", `must be "inline"`},
		{"envoy path with inline", "delivery: file", "delivery: inline", "gateway.listeners[0].certificate.envoy_cert_path", "only with delivery: file"},
		{"tls without server name", "      server_name: localhost\n", "", "gateway.authz.tls.server_name", "missing"},
		{"tls without ca", "      ca_file: control/ca.pem\n", "", "gateway.authz.tls.ca_file", "missing"},
		{"wildcard server name", "server_name: localhost", `server_name: "*.example.com"`, "gateway.authz.tls.server_name", "DNS name or IP"},
		{"bad access log address", "access_log_address: 127.0.0.1:9002", "access_log_address: localhost:9002", "gateway.authz.access_log_address", "IP address"},
		{"peer twice", "envoy-edge.example.com]", "spiffe://mcc/envoy/edge-eu]", "gateway.node_groups[0].peers[1]", "listed twice"},
		{"peer with space", "envoy-edge.example.com]", `"envoy edge"]`, "gateway.node_groups[0].peers[1]", "without white space"},
		{"peer not a string", "envoy-edge.example.com]", "42]", "gateway.node_groups[0].peers[1]", "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := hardened(t)
			text := strings.Replace(good, tc.old, tc.new, 1)
			if text == good {
				t.Fatal("test case does not change the section")
			}
			_, err := decode(t, dir, text)
			var le *gateway.Error
			if !errors.As(err, &le) {
				t.Fatalf("err = %v", err)
			}
			for _, p := range le.Problems {
				if p.Field == tc.field && strings.Contains(p.Msg, tc.msg) && p.Line > 0 {
					return
				}
			}
			t.Errorf("want %s: ...%s...; got:\n%v", tc.field, tc.msg, err)
		})
	}
}
