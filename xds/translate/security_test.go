package translate_test

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/translate"
)

// TestFileDeliveryKeepsTheKeyOffTheWire: with delivery: file the server
// certificate secret names files on the Envoy host and holds no key
// material at all.
func TestFileDeliveryKeepsTheKeyOffTheWire(t *testing.T) {
	f := newFixture(t)
	l := f.in.Gateway.Listener("edge")
	key := l.KeyPEM
	l.Delivery = gateway.DeliveryFile
	l.CertPEM, l.KeyPEM = nil, nil // what the decoder leaves: nothing read
	l.EnvoyCertPath, l.EnvoyKeyPath = "/etc/envoy/tls/edge.pem", "/etc/envoy/tls/edge-key.pem"
	res := build(t, f.in)["edge-eu"]

	sec := find[*tlsv3.Secret](t, res, resourcev3.SecretType, "mcc-server-cert-edge")
	tc := sec.GetTlsCertificate()
	if tc.GetCertificateChain().GetFilename() != "/etc/envoy/tls/edge.pem" || tc.GetPrivateKey().GetFilename() != "/etc/envoy/tls/edge-key.pem" {
		t.Errorf("secret = %v", tc)
	}
	if tc.GetWatchedDirectory().GetPath() != "/etc/envoy/tls" {
		t.Errorf("watched directory = %v, want the pair's directory (rotation by rename)", tc.GetWatchedDirectory())
	}
	// Nothing of the key anywhere in anything the group is sent.
	for typ, rs := range res {
		for _, r := range rs {
			b, err := proto.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("PRIVATE KEY")) || bytes.Contains(b, key[40:80]) {
				t.Errorf("%s holds private key material", typ)
			}
		}
	}
}

// TestAuthzOverMTLS: the ext_authz and access-log clusters carry Envoy's
// client certificate, trust only the control CA and check mcc authz's
// name; the access log gets its own cluster when it has its own address.
func TestAuthzOverMTLS(t *testing.T) {
	f := newFixture(t)
	f.in.Gateway.Authz.TLS = &gateway.UpstreamTLS{CAFile: "/etc/envoy/control-ca.pem", CertFile: "/etc/envoy/envoy.pem", KeyFile: "/etc/envoy/envoy-key.pem", ServerName: "localhost"}
	f.in.Gateway.Authz.AccessLogAddress = gateway.Endpoint{IP: "127.0.0.1", Port: 9002}
	res := build(t, f.in)["edge-eu"]

	for _, name := range []string{translate.AuthzCluster, translate.AccessLogCluster} {
		c := find[*clusterv3.Cluster](t, res, resourcev3.ClusterType, name)
		ts := c.GetTransportSocket()
		if ts.GetName() != wellknown.TransportSocketTLS {
			t.Fatalf("%s: transport socket %v", name, ts)
		}
		utc := unpack[*tlsv3.UpstreamTlsContext](t, ts.GetTypedConfig())
		ctc := utc.GetCommonTlsContext()
		if utc.GetSni() != "localhost" || len(ctc.GetAlpnProtocols()) != 1 || ctc.GetAlpnProtocols()[0] != "h2" {
			t.Errorf("%s: sni %q alpn %v", name, utc.GetSni(), ctc.GetAlpnProtocols())
		}
		certs := ctc.GetTlsCertificates()
		if len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() != "/etc/envoy/envoy.pem" || certs[0].GetPrivateKey().GetFilename() != "/etc/envoy/envoy-key.pem" {
			t.Errorf("%s: client certificate %v", name, certs)
		}
		vc := ctc.GetValidationContext()
		sans := vc.GetMatchTypedSubjectAltNames()
		if vc.GetTrustedCa().GetFilename() != "/etc/envoy/control-ca.pem" || len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || sans[0].GetMatcher().GetExact() != "localhost" {
			t.Errorf("%s: validation %v", name, vc)
		}
	}
	lis := find[*listenerv3.Listener](t, res, resourcev3.ListenerType, "mcc-listener-edge")
	tcp := unpack[*grpcalsv3.TcpGrpcAccessLogConfig](t, lis.AccessLog[0].GetTypedConfig())
	if got := tcp.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != translate.AccessLogCluster {
		t.Errorf("access log cluster = %s", got)
	}
	if cla := find[*endpointv3.ClusterLoadAssignment](t, res, resourcev3.EndpointType, translate.AccessLogCluster); cla.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue() != 9002 {
		t.Errorf("access log endpoints = %v", cla)
	}

	// An IP as the server name: matched as an IP SAN, no SNI.
	f.in.Gateway.Authz.TLS.ServerName = "127.0.0.1"
	res = build(t, f.in)["edge-eu"]
	c := find[*clusterv3.Cluster](t, res, resourcev3.ClusterType, translate.AuthzCluster)
	utc := unpack[*tlsv3.UpstreamTlsContext](t, c.GetTransportSocket().GetTypedConfig())
	if san := utc.GetCommonTlsContext().GetValidationContext().GetMatchTypedSubjectAltNames()[0]; utc.GetSni() != "" || san.GetSanType() != tlsv3.SubjectAltNameMatcher_IP_ADDRESS {
		t.Errorf("IP server name: sni %q san %v", utc.GetSni(), san)
	}
}
