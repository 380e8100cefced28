package translate_test

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/validate"
	"github.com/mccgate/mcc/xds/xdstest"
)

type fixture struct {
	in      translate.Input
	sets    map[string]*translate.FusionSet
	certPEM []byte
}

// newFixture: listener "edge" with app-a (defense, pins, CRL) and app-b
// (detection); listener "internal" with app-c (defense) in another group.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	server := xdstest.NewCA(t, "server CA").IssueServer(t, "edge.example.com")
	caA, caB, caC := xdstest.NewCA(t, "app-a CA"), xdstest.NewCA(t, "app-b CA"), xdstest.NewCA(t, "app-c CA")
	clientA := caA.IssueClient(t, "app-a", "com.example.a")
	sets := map[string]*translate.FusionSet{
		"app-a": {ID: "app-a", Mode: threat.ModeDefense, IdentityURI: "mcc://app-a/com.example.a", CAPEM: caA.CertPEM,
			CRLPEM: caA.CRL(t), SPKIPins: []string{clientA.SPKIPin()}},
		"app-b": {ID: "app-b", Mode: threat.ModeDetection, IdentityURI: "mcc://app-b/com.example.b", CAPEM: caB.CertPEM},
		"app-c": {ID: "app-c", Mode: threat.ModeDefense, IdentityURI: "mcc://app-c/com.example.c", CAPEM: caC.CertPEM},
	}
	listener := func(name string, port uint32, routes ...*gateway.Route) *gateway.Listener {
		return &gateway.Listener{Name: name, Address: "0.0.0.0", Port: port, CertPEM: server.CertPEM, KeyPEM: server.KeyPEM, Routes: routes}
	}
	g := &gateway.Gateway{
		Authz: gateway.Authz{Address: gateway.Endpoint{IP: "127.0.0.1", Port: 9001}, Timeout: gateway.DefaultAuthzTimeout},
		Listeners: []*gateway.Listener{
			listener("edge", 8443,
				&gateway.Route{Host: "a.example.com", PathPrefix: "/", FusionSet: "app-a", Upstream: "api-a"},
				&gateway.Route{Host: "a.example.com", PathPrefix: "/v2", FusionSet: "app-a", Upstream: "api-a2"},
				&gateway.Route{Host: "*.b.example.com", PathPrefix: "/", FusionSet: "app-b", Upstream: "api-b"}),
			listener("internal", 9443,
				&gateway.Route{Host: "c.example.com", PathPrefix: "/", FusionSet: "app-c", Upstream: "api-c"}),
		},
		Upstreams: []*gateway.Upstream{
			{Name: "api-a", Endpoints: []gateway.Endpoint{{IP: "127.0.0.1", Port: 8081}}, ConnectTimeout: gateway.DefaultUpstreamConnectTimeout},
			{Name: "api-a2", Endpoints: []gateway.Endpoint{{IP: "127.0.0.1", Port: 8082}}, HTTP2: true, ConnectTimeout: gateway.DefaultUpstreamConnectTimeout},
			{Name: "api-b", Endpoints: []gateway.Endpoint{{IP: "127.0.0.1", Port: 8083}}, ConnectTimeout: gateway.DefaultUpstreamConnectTimeout},
			{Name: "api-c", Endpoints: []gateway.Endpoint{{IP: "10.0.0.3", Port: 8084}}, ConnectTimeout: gateway.DefaultUpstreamConnectTimeout},
		},
		NodeGroups: []*gateway.NodeGroup{
			{Cluster: "edge-eu", Listeners: []string{"edge"}},
			{Cluster: "internal", Listeners: []string{"internal"}},
		},
	}
	return &fixture{in: translate.Input{Gateway: g, Sets: sets}, sets: sets, certPEM: server.CertPEM}
}

func build(t *testing.T, in translate.Input) map[string]translate.Resources {
	t.Helper()
	groups, err := translate.Build(in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	for cluster, res := range groups {
		snap, err := cachev3.NewSnapshot("v1", res)
		if err != nil {
			t.Fatalf("group %s: NewSnapshot: %v", cluster, err)
		}
		if err := snap.Consistent(); err != nil {
			t.Errorf("group %s: Consistent: %v", cluster, err)
		}
		for typ, rs := range res {
			for _, r := range rs {
				if err := validate.Message(r); err != nil {
					t.Errorf("group %s: %s %q: %v", cluster, typ, cachev3.GetResourceName(r), err)
				}
			}
		}
	}
	return groups
}

func find[T proto.Message](t *testing.T, res translate.Resources, typ resourcev3.Type, name string) T {
	t.Helper()
	for _, r := range res[typ] {
		if cachev3.GetResourceName(r) == name {
			return r.(T)
		}
	}
	t.Fatalf("no %s named %q in %v", typ, name, names(res[typ]))
	var zero T
	return zero
}

func names(rs []types.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, cachev3.GetResourceName(r))
	}
	return out
}

func unpack[T proto.Message](t *testing.T, a *anypb.Any) T {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatalf("unpacking %s: %v", a.GetTypeUrl(), err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("Any holds %T", m)
	}
	return v
}

func chain(t *testing.T, l *listenerv3.Listener, name string) *listenerv3.FilterChain {
	t.Helper()
	for _, fc := range l.FilterChains {
		if fc.Name == name {
			return fc
		}
	}
	t.Fatalf("listener %s has no filter chain %q", l.Name, name)
	return nil
}

func isADS(cs *corev3.ConfigSource) bool {
	return cs.GetAds() != nil && cs.GetResourceApiVersion() == corev3.ApiVersion_V3
}

func TestBuildNodeGroupsHoldOnlyWhatTheyUse(t *testing.T) {
	f := newFixture(t)
	groups := build(t, f.in)
	if len(groups) != 2 {
		t.Fatalf("groups = %d", len(groups))
	}
	edge, internal := groups["edge-eu"], groups["internal"]
	want := map[string]map[resourcev3.Type][]string{
		"edge-eu": {
			resourcev3.ListenerType: {"mcc-listener-edge"},
			resourcev3.RouteType:    {"mcc-routes-edge/app-a", "mcc-routes-edge/app-b"},
			resourcev3.SecretType:   {"mcc-server-cert-edge", "mcc-validation-app-a", "mcc-validation-app-b"},
			resourcev3.ClusterType:  {"mcc-authz", "mcc-upstream-api-a", "mcc-upstream-api-a2", "mcc-upstream-api-b"},
			resourcev3.EndpointType: {"mcc-authz", "mcc-upstream-api-a", "mcc-upstream-api-a2", "mcc-upstream-api-b"},
		},
		"internal": {
			resourcev3.ListenerType: {"mcc-listener-internal"},
			resourcev3.RouteType:    {"mcc-routes-internal/app-c"},
			resourcev3.SecretType:   {"mcc-server-cert-internal", "mcc-validation-app-c"},
			resourcev3.ClusterType:  {"mcc-authz", "mcc-upstream-api-c"},
			resourcev3.EndpointType: {"mcc-authz", "mcc-upstream-api-c"},
		},
	}
	for group, res := range map[string]translate.Resources{"edge-eu": edge, "internal": internal} {
		for typ, wantNames := range want[group] {
			got := names(res[typ])
			if len(got) != len(wantNames) {
				t.Errorf("%s %s = %v, want %v", group, typ, got, wantNames)
				continue
			}
			for i := range got {
				if got[i] != wantNames[i] {
					t.Errorf("%s %s = %v, want %v", group, typ, got, wantNames)
					break
				}
			}
		}
	}
}

func TestBuildDefense(t *testing.T) {
	f := newFixture(t)
	res := build(t, f.in)["edge-eu"]
	lis := find[*listenerv3.Listener](t, res, resourcev3.ListenerType, "mcc-listener-edge")

	sa := lis.GetAddress().GetSocketAddress()
	if sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != 8443 {
		t.Errorf("address = %v", sa)
	}
	if len(lis.ListenerFilters) != 1 || lis.ListenerFilters[0].Name != wellknown.TLSInspector {
		t.Errorf("listener filters = %v", lis.ListenerFilters)
	}

	// Listener access log: tcp_grpc to mcc-authz, V3, named mcc-handshake, no filter.
	if len(lis.AccessLog) != 1 {
		t.Fatalf("access logs = %d", len(lis.AccessLog))
	}
	al := lis.AccessLog[0]
	if al.Name != "envoy.access_loggers.tcp_grpc" || al.Filter != nil {
		t.Errorf("access log = %s filter=%v", al.Name, al.Filter)
	}
	tcp := unpack[*grpcalsv3.TcpGrpcAccessLogConfig](t, al.GetTypedConfig())
	cc := tcp.GetCommonConfig()
	if cc.GetLogName() != "mcc-handshake" || cc.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "mcc-authz" || cc.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("tcp_grpc common config = %v", cc)
	}

	fc := chain(t, lis, "mcc-fusion-set-app-a")
	if m := fc.GetFilterChainMatch(); len(m.ServerNames) != 1 || m.ServerNames[0] != "a.example.com" || m.TransportProtocol != "tls" {
		t.Errorf("filter chain match = %v", m)
	}
	if fc.GetTransportSocket().GetName() != wellknown.TransportSocketTLS {
		t.Errorf("transport socket = %s", fc.GetTransportSocket().GetName())
	}
	dtc := unpack[*tlsv3.DownstreamTlsContext](t, fc.GetTransportSocket().GetTypedConfig())
	if !dtc.GetRequireClientCertificate().GetValue() {
		t.Error("defense: require_client_certificate must be true")
	}
	ctc := dtc.GetCommonTlsContext()
	if sds := ctc.GetTlsCertificateSdsSecretConfigs(); len(sds) != 1 || sds[0].Name != "mcc-server-cert-edge" || !isADS(sds[0].SdsConfig) {
		t.Errorf("server certificate SDS = %v", sds)
	}
	if len(ctc.GetTlsCertificates()) != 0 {
		t.Error("server certificate must come by SDS only")
	}
	if v := ctc.GetValidationContextSdsSecretConfig(); v.GetName() != "mcc-validation-app-a" || !isADS(v.GetSdsConfig()) {
		t.Errorf("validation context SDS = %v", v)
	}

	// The validation secret: CA, identity URI exact, pins, CRL leaf-only, verify chain.
	sec := find[*tlsv3.Secret](t, res, resourcev3.SecretType, "mcc-validation-app-a")
	vc := sec.GetValidationContext()
	if !bytes.Equal(vc.GetTrustedCa().GetInlineBytes(), f.sets["app-a"].CAPEM) {
		t.Error("trusted_ca is not app-a's CA bundle")
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].SanType != tlsv3.SubjectAltNameMatcher_URI || sans[0].GetMatcher().GetExact() != "mcc://app-a/com.example.a" {
		t.Errorf("SAN matchers = %v", sans)
	}
	if pins := vc.GetVerifyCertificateSpki(); len(pins) != 1 || pins[0] != f.sets["app-a"].SPKIPins[0] {
		t.Errorf("SPKI pins = %v", pins)
	}
	if !bytes.Equal(vc.GetCrl().GetInlineBytes(), f.sets["app-a"].CRLPEM) || !vc.GetOnlyVerifyLeafCertCrl() {
		t.Errorf("CRL: %d bytes, only leaf %v", len(vc.GetCrl().GetInlineBytes()), vc.GetOnlyVerifyLeafCertCrl())
	}
	if vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_VERIFY_TRUST_CHAIN {
		t.Errorf("trust chain verification = %v", vc.GetTrustChainVerification())
	}
	cert := find[*tlsv3.Secret](t, res, resourcev3.SecretType, "mcc-server-cert-edge")
	if !bytes.Equal(cert.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), f.certPEM) || len(cert.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) == 0 {
		t.Error("server certificate secret does not hold the listener's pair")
	}

	// HCM: RDS over ADS, ext_authz then router, XFCC sanitize-set.
	if len(fc.Filters) != 1 || fc.Filters[0].Name != wellknown.HTTPConnectionManager {
		t.Fatalf("filters = %v", fc.Filters)
	}
	hcm := unpack[*hcmv3.HttpConnectionManager](t, fc.Filters[0].GetTypedConfig())
	if rds := hcm.GetRds(); rds.GetRouteConfigName() != "mcc-routes-edge/app-a" || !isADS(rds.GetConfigSource()) {
		t.Errorf("RDS = %v", rds)
	}
	if hcm.ForwardClientCertDetails != hcmv3.HttpConnectionManager_SANITIZE_SET {
		t.Errorf("forward_client_cert_details = %v", hcm.ForwardClientCertDetails)
	}
	if d := hcm.GetSetCurrentClientCertDetails(); !d.GetSubject().GetValue() || !d.GetUri() || !d.GetCert() || !d.GetChain() {
		t.Errorf("set_current_client_cert_details = %v", d)
	}
	if len(hcm.HttpFilters) != 2 || hcm.HttpFilters[0].Name != wellknown.HTTPExternalAuthorization || hcm.HttpFilters[1].Name != wellknown.Router {
		t.Fatalf("http filters = %v", hcm.HttpFilters)
	}
	ea := unpack[*extauthzv3.ExtAuthz](t, hcm.HttpFilters[0].GetTypedConfig())
	if ea.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "mcc-authz" || !ea.IncludePeerCertificate ||
		ea.TransportApiVersion != corev3.ApiVersion_V3 || ea.FailureModeAllow || ea.WithRequestBody != nil {
		t.Errorf("ext_authz = %v", ea)
	}
	if ea.GetGrpcService().GetTimeout().AsDuration() != gateway.DefaultAuthzTimeout {
		t.Errorf("ext_authz timeout = %v", ea.GetGrpcService().GetTimeout())
	}

	// Routes: per-route fusion set for ext_authz, longest prefix first.
	// Each fusion set's chain has its own route configuration, with
	// only that set's hosts: a Host of another set finds no route there.
	rc := find[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "mcc-routes-edge/app-a")
	if len(rc.VirtualHosts) != 1 {
		t.Fatalf("virtual hosts = %d", len(rc.VirtualHosts))
	}
	vhA := rc.VirtualHosts[0]
	if vhA.Domains[0] != "a.example.com" || len(vhA.Routes) != 2 {
		t.Fatalf("virtual host a = %v", vhA)
	}
	if vhA.Routes[0].GetMatch().GetPathSeparatedPrefix() != "/v2" || vhA.Routes[0].GetRoute().GetCluster() != "mcc-upstream-api-a2" {
		t.Errorf("first route = %v", vhA.Routes[0])
	}
	if vhA.Routes[1].GetMatch().GetPrefix() != "/" || vhA.Routes[1].GetRoute().GetCluster() != "mcc-upstream-api-a" {
		t.Errorf("second route = %v", vhA.Routes[1])
	}
	rcB := find[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, "mcc-routes-edge/app-b")
	if len(rcB.VirtualHosts) != 1 || rcB.VirtualHosts[0].Domains[0] != "*.b.example.com" {
		t.Fatalf("app-b virtual hosts = %v", rcB.VirtualHosts)
	}
	for _, rc := range []*routev3.RouteConfiguration{rc, rcB} {
		for _, vh := range rc.VirtualHosts {
			wantSet := map[string]string{"a.example.com": "app-a", "*.b.example.com": "app-b"}[vh.Domains[0]]
			for _, r := range vh.Routes {
				per := unpack[*extauthzv3.ExtAuthzPerRoute](t, r.TypedPerFilterConfig[wellknown.HTTPExternalAuthorization])
				if got := per.GetCheckSettings().GetContextExtensions()["fusion_set"]; got != wantSet {
					t.Errorf("route %s: context_extensions fusion_set = %q, want %q", r.Name, got, wantSet)
				}
			}
		}
	}

	// Clusters: EDS over ADS; mcc-authz and http2 upstreams speak HTTP/2.
	for _, name := range []string{"mcc-authz", "mcc-upstream-api-a", "mcc-upstream-api-a2"} {
		c := find[*clusterv3.Cluster](t, res, resourcev3.ClusterType, name)
		if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetServiceName() != name || !isADS(c.GetEdsClusterConfig().GetEdsConfig()) {
			t.Errorf("cluster %s: not EDS over ADS: %v", name, c)
		}
		opts, h2 := c.TypedExtensionProtocolOptions[translate.HTTPProtocolOptionsKey]
		if wantH2 := name != "mcc-upstream-api-a"; h2 != wantH2 {
			t.Errorf("cluster %s: http2 options present = %v", name, h2)
			continue
		}
		if h2 {
			po := unpack[*httpv3.HttpProtocolOptions](t, opts)
			if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
				t.Errorf("cluster %s: not explicit HTTP/2: %v", name, po)
			}
		}
	}
	cla := find[*endpointv3.ClusterLoadAssignment](t, res, resourcev3.EndpointType, "mcc-authz")
	if a := cla.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 9001 {
		t.Errorf("mcc-authz endpoint = %v", a)
	}
}

func TestBuildDetection(t *testing.T) {
	f := newFixture(t)
	res := build(t, f.in)["edge-eu"]
	lis := find[*listenerv3.Listener](t, res, resourcev3.ListenerType, "mcc-listener-edge")
	fc := chain(t, lis, "mcc-fusion-set-app-b")
	if m := fc.GetFilterChainMatch(); len(m.ServerNames) != 1 || m.ServerNames[0] != "*.b.example.com" {
		t.Errorf("server names = %v", m.ServerNames)
	}
	dtc := unpack[*tlsv3.DownstreamTlsContext](t, fc.GetTransportSocket().GetTypedConfig())
	if dtc.GetRequireClientCertificate() == nil || dtc.GetRequireClientCertificate().GetValue() {
		t.Error("detection: require_client_certificate must be explicitly false")
	}
	if v := dtc.GetCommonTlsContext().GetValidationContextSdsSecretConfig(); v.GetName() != "mcc-validation-app-b" {
		t.Errorf("validation SDS = %v", v)
	}
	vc := find[*tlsv3.Secret](t, res, resourcev3.SecretType, "mcc-validation-app-b").GetValidationContext()
	if vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED {
		t.Errorf("trust chain verification = %v", vc.GetTrustChainVerification())
	}
	if len(vc.GetMatchTypedSubjectAltNames()) != 0 || len(vc.GetVerifyCertificateSpki()) != 0 {
		t.Errorf("detection must enforce no identity or pin in the handshake: %v", vc)
	}
	if len(vc.GetTrustedCa().GetInlineBytes()) == 0 {
		t.Error("detection still needs the CA, or Envoy asks for no certificate")
	}
	if vc.GetCrl() != nil {
		t.Error("app-b has no CRL")
	}
	// The same ext_authz and XFCC as defense.
	hcm := unpack[*hcmv3.HttpConnectionManager](t, fc.Filters[0].GetTypedConfig())
	if hcm.ForwardClientCertDetails != hcmv3.HttpConnectionManager_SANITIZE_SET || hcm.HttpFilters[0].Name != wellknown.HTTPExternalAuthorization {
		t.Errorf("detection HCM = %v", hcm)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	f := newFixture(t)
	a, b := build(t, f.in), build(t, f.in)
	for group, res := range a {
		for typ, rs := range res {
			for i, r := range rs {
				x, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				y, _ := proto.MarshalOptions{Deterministic: true}.Marshal(b[group][typ][i])
				if !bytes.Equal(x, y) {
					t.Errorf("%s %s %s differs between two builds", group, typ, cachev3.GetResourceName(r))
				}
			}
		}
	}
}

func TestBuildRefusesIncompleteSets(t *testing.T) {
	f := newFixture(t)
	f.sets["app-b"].CAPEM = nil
	if _, err := translate.Build(f.in); err == nil {
		t.Error("a fusion set without a CA must be refused")
	}
	f = newFixture(t)
	f.sets["app-a"].Mode = "audit"
	if _, err := translate.Build(f.in); err == nil {
		t.Error("an unknown mode must be refused")
	}
	f = newFixture(t)
	delete(f.sets, "app-c")
	if _, err := translate.Build(f.in); err == nil {
		t.Error("a route to a fusion set that is not loaded must be refused")
	}
}

func TestProxylessGRPCIsConsistentAndValid(t *testing.T) {
	res, err := xdstest.ProxylessGRPC("greeter", []gateway.Endpoint{{IP: "127.0.0.1", Port: 50051}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cachev3.NewSnapshot("v1", res)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("Consistent: %v", err)
	}
	for _, rs := range res {
		for _, r := range rs {
			if err := validate.Message(r); err != nil {
				t.Errorf("%s: %v", cachev3.GetResourceName(r), err)
			}
		}
	}
	lis := find[*listenerv3.Listener](t, res, resourcev3.ListenerType, "greeter")
	if lis.GetApiListener() == nil {
		t.Error("no api_listener")
	}
}
