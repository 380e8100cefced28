package xdstest

import (
	"fmt"
	"testing"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/translate"
)

// Fixture is a ready translate.Input: n fusion sets "app-0" ... (even ones in
// defense, odd ones in detection), each with its own CA and host
// "app-<i>.example.com" on listener "edge" (port 8443), upstream "api-<i>",
// and a node group for Envoy node cluster "edge". Tests change it freely.
type Fixture struct {
	Input    translate.Input
	ServerCA *CA
	CAs      map[string]*CA
}

// NewFixture builds a Fixture with n fusion sets.
func NewFixture(t testing.TB, n int) *Fixture {
	t.Helper()
	f := &Fixture{ServerCA: NewCA(t, "server CA"), CAs: map[string]*CA{}}
	server := f.ServerCA.IssueServer(t, "*.example.com")
	l := &gateway.Listener{Name: "edge", Address: "0.0.0.0", Port: 8443, CertPEM: server.CertPEM, KeyPEM: server.KeyPEM}
	g := &gateway.Gateway{
		Authz:      gateway.Authz{Address: gateway.Endpoint{IP: "127.0.0.1", Port: 9001}, Timeout: gateway.DefaultAuthzTimeout},
		Listeners:  []*gateway.Listener{l},
		NodeGroups: []*gateway.NodeGroup{{Cluster: "edge", Listeners: []string{"edge"}}},
	}
	sets := map[string]*translate.FusionSet{}
	// One CA serves every set past the first few: generating a thousand
	// keys would dominate a benchmark that measures snapshot building.
	var ca *CA
	for i := range n {
		id := fmt.Sprintf("app-%d", i)
		if i < 4 {
			ca = NewCA(t, id+" CA")
		}
		f.CAs[id] = ca
		mode := threat.ModeDefense
		if i%2 == 1 {
			mode = threat.ModeDetection
		}
		sets[id] = &translate.FusionSet{ID: id, Mode: mode, IdentityURI: fmt.Sprintf("mcc://%s/com.example.app%d", id, i), CAPEM: ca.CertPEM}
		up := fmt.Sprintf("api-%d", i)
		g.Upstreams = append(g.Upstreams, &gateway.Upstream{Name: up, ConnectTimeout: gateway.DefaultUpstreamConnectTimeout,
			Endpoints: []gateway.Endpoint{{IP: "127.0.0.1", Port: uint32(20000 + i%40000)}}})
		l.Routes = append(l.Routes, &gateway.Route{Host: id + ".example.com", PathPrefix: "/", FusionSet: id, Upstream: up})
	}
	f.Input = translate.Input{Gateway: g, Sets: sets}
	return f
}

// Build translates the fixture or fails the test.
func (f *Fixture) Build(t testing.TB) map[string]translate.Resources {
	t.Helper()
	groups, err := translate.Build(f.Input)
	if err != nil {
		t.Fatalf("translate.Build: %v", err)
	}
	return groups
}

// AddRoute adds a route for host to fusion set id's upstream on "edge".
func (f *Fixture) AddRoute(host, id string) {
	l := f.Input.Gateway.Listeners[0]
	var up string
	for _, r := range l.Routes {
		if r.FusionSet == id {
			up = r.Upstream
		}
	}
	l.Routes = append(l.Routes, &gateway.Route{Host: host, PathPrefix: "/", FusionSet: id, Upstream: up})
}
