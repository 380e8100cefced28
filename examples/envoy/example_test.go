// Package envoy_test checks the Envoy example: both bootstraps load as Envoy
// would parse them and pass recursive validation, the fusion set file (with
// freshly generated PEM files) loads, translates and validates, and the
// example runs with the hardened defaults: mcc xds over mTLS as the README
// starts it, with certificates made as the README makes them, and an ADS
// client presenting Envoy's certificate from the bootstrap.
package envoy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// Every "@type" the bootstraps use must be linked in, or protojson
	// cannot resolve it (as Envoy could not without the extension).
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/validate"
	"github.com/mccgate/mcc/xds/xdstest"
)

func loadBootstrap(t *testing.T, name string) *bootstrapv3.Bootstrap {
	t.Helper()
	y, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := validate.Message(b); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

func TestBootstraps(t *testing.T) {
	for name, apiType := range map[string]corev3.ApiConfigSource_ApiType{
		"envoy-bootstrap.yaml":       corev3.ApiConfigSource_GRPC,
		"envoy-bootstrap-delta.yaml": corev3.ApiConfigSource_DELTA_GRPC,
	} {
		t.Run(name, func(t *testing.T) {
			b := loadBootstrap(t, name)
			if b.GetNode().GetId() == "" || b.GetNode().GetCluster() != "mcc-edge" {
				t.Errorf("node = %v, want cluster mcc-edge (the example's node group)", b.GetNode())
			}
			ads := b.GetDynamicResources().GetAdsConfig()
			if ads.GetApiType() != apiType || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
				t.Errorf("ads_config = %v", ads)
			}
			if ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "xds_cluster" {
				t.Errorf("ADS does not use xds_cluster: %v", ads.GetGrpcServices())
			}
			for what, cs := range map[string]*corev3.ConfigSource{"lds": b.GetDynamicResources().GetLdsConfig(), "cds": b.GetDynamicResources().GetCdsConfig()} {
				if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
					t.Errorf("%s_config = %v, want ADS, V3", what, cs)
				}
			}
			clusters := b.GetStaticResources().GetClusters()
			if len(clusters) != 1 || clusters[0].GetName() != "xds_cluster" {
				t.Fatalf("static clusters = %v", clusters)
			}
			c := clusters[0]
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 18000 {
				t.Errorf("xds_cluster endpoint = %v, want mcc xds's default 127.0.0.1:18000", sa)
			}
			if _, ok := c.GetTypedExtensionProtocolOptions()[translate.HTTPProtocolOptionsKey]; !ok {
				t.Error("xds_cluster does not speak HTTP/2 (gRPC needs it)")
			}
			tc := xdsClusterTLS(t, b)
			if got := tc; got.cert != "envoy.pem" || got.key != "envoy-key.pem" || got.ca != "control-ca/ca.pem" || got.san != "localhost" || got.sni != "localhost" || !got.h2 {
				t.Errorf("xds_cluster TLS = %+v, want Envoy's client certificate, the control CA, SAN and SNI localhost, ALPN h2", got)
			}
		})
	}
}

// TestFusionSetsExample loads fusion-sets.yaml from a copy of this
// directory holding the files the README's commands would create.
func TestFusionSetsExample(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("fusion-sets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := xdstest.WriteFile(t, dir, "fusion-sets.yaml", data)
	for _, set := range []string{"bank-prod", "bank-beta"} {
		ca := xdstest.NewCA(t, set+" CA")
		xdstest.WriteFile(t, dir, "ca/"+set+"/ca.pem", ca.CertPEM)
		xdstest.WriteFile(t, dir, "ca/"+set+"/crl.pem", ca.CRL(t))
		xdstest.WriteFile(t, dir, "ca/"+set+"/revoked.txt", []byte("# revoked serials, one per line\n"))
	}
	server := xdstest.NewCA(t, "server").IssueServer(t, "bank.localhost", "beta.localhost")
	xdstest.WriteFile(t, dir, "server.pem", server.CertPEM)
	xdstest.WriteFile(t, dir, "server-key.pem", server.KeyPEM)

	cfg, err := xds.Load(path)
	if err != nil {
		t.Fatalf("loading the example: %v", err)
	}
	groups, err := translate.Build(cfg.Input)
	if err != nil {
		t.Fatalf("translating the example: %v", err)
	}
	res, ok := groups["mcc-edge"]
	if !ok || len(groups) != 1 {
		t.Fatalf("node groups = %v, want mcc-edge (the bootstraps' node cluster)", len(groups))
	}
	snap, err := cachev3.NewSnapshot("v1", res)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("Consistent: %v", err)
	}
	n := 0
	for _, rs := range res {
		for _, r := range rs {
			n++
			if err := validate.Message(r); err != nil {
				t.Errorf("%s: %v", cachev3.GetResourceName(r), err)
			}
		}
	}
	if cfg.Input.Sets["bank-prod"].Mode != "defense" || cfg.Input.Sets["bank-beta"].Mode != "detection" {
		t.Errorf("modes = %s, %s", cfg.Input.Sets["bank-prod"].Mode, cfg.Input.Sets["bank-beta"].Mode)
	}
	if a := cfg.Gateway.Authz.Address; a.IP != "127.0.0.1" || a.Port != 18081 {
		t.Errorf("authz address = %v, want mcc authz's default 127.0.0.1:18081", a)
	}
	for _, f := range cfg.Files {
		if !strings.HasPrefix(f, dir) {
			t.Errorf("watched file %s is outside the example directory", f)
		}
	}
	// delivery: file: mcc xds reads neither server.pem nor server-key.pem.
	if len(cfg.Files) != 7 || filepath.Base(cfg.Files[0]) != "fusion-sets.yaml" {
		t.Errorf("watched files = %v", cfg.Files)
	}
	sec := findResource[*tlsv3.Secret](t, res, resourcev3.SecretType, translate.ServerCertSecretName("edge"))
	if tc := sec.GetTlsCertificate(); tc.GetPrivateKey().GetFilename() != filepath.Join(dir, "server-key.pem") || len(tc.GetPrivateKey().GetInlineBytes()) != 0 {
		t.Errorf("server certificate secret = %v, want the key file's path and no key", tc)
	}
	cl := findResource[*clusterv3.Cluster](t, res, resourcev3.ClusterType, translate.AuthzCluster)
	if cl.GetTransportSocket() == nil {
		t.Error("the mcc-authz cluster has no TLS transport socket")
	}
	if g := cfg.Gateway.NodeGroups[0]; len(g.Peers) != 1 || g.Peers[0] != envoyIdentity {
		t.Errorf("node group peers = %v, want the identity of the README's envoy.pem", g.Peers)
	}
	t.Logf("example: %d resources, %d watched files, version %s", n, len(cfg.Files), cfg.Version)
}
