package translate_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// rebuilt lists the resources of group "edge" that b does not share (by
// identity) with a, as "type name".
func rebuilt(a, b translate.Resources) []string {
	old := map[types.Resource]bool{}
	for _, rs := range a {
		for _, r := range rs {
			old[r] = true
		}
	}
	var out []string
	for typ, rs := range b {
		for _, r := range rs {
			if !old[r] {
				out = append(out, typ[len("type.googleapis.com/envoy."):]+" "+cachev3.GetResourceName(r))
			}
		}
	}
	return out
}

// TestTranslatorRebuildsOnlyWhatChanged: with 50 fusion sets, a changed
// route rebuilds that set's route configuration only; a new CA rebuilds
// that set's validation secret only; a new host rebuilds the set's filter
// chain, route configuration and the listener that holds the chain. Every
// other resource is the very proto of the build before.
func TestTranslatorRebuildsOnlyWhatChanged(t *testing.T) {
	f := xdstest.NewFixture(t, 50)
	tr := translate.NewTranslator()
	step := func(name string, change func(), want ...string) {
		t.Helper()
		before, err := tr.Build(f.Input)
		if err != nil {
			t.Fatal(err)
		}
		change()
		after, err := tr.Build(f.Input)
		if err != nil {
			t.Fatal(err)
		}
		got := rebuilt(before["edge"], after["edge"])
		if len(got) != len(want) {
			t.Fatalf("%s: rebuilt %v, want %v", name, got, want)
		}
		for i := range want {
			found := false
			for _, g := range got {
				found = found || g == want[i]
			}
			if !found {
				t.Errorf("%s: rebuilt %v, want %v", name, got, want)
			}
		}
		// The remembered resources equal what a fresh translation gives.
		fresh, err := translate.Build(f.Input)
		if err != nil {
			t.Fatal(err)
		}
		for typ, rs := range fresh["edge"] {
			for i, r := range rs {
				if !proto.Equal(r, after["edge"][typ][i]) {
					t.Errorf("%s: %s %s differs from a fresh build", name, typ, cachev3.GetResourceName(r))
				}
			}
		}
	}
	l := f.Input.Gateway.Listeners[0]
	step("nothing", func() {})
	step("route", func() { l.Routes[7].PathPrefix = "/v2" }, "config.route.v3.RouteConfiguration mcc-routes-edge/app-7")
	step("CA", func() { f.Input.Sets["app-9"].CAPEM = xdstest.NewCA(t, "app-9 CA 2").CertPEM },
		"extensions.transport_sockets.tls.v3.Secret mcc-validation-app-9")
	step("host", func() { f.AddRoute("www.app-3.example.com", "app-3") },
		"config.route.v3.RouteConfiguration mcc-routes-edge/app-3", "config.listener.v3.Listener mcc-listener-edge")
	step("upstream", func() { f.Input.Gateway.Upstreams[4].HTTP2 = true }, "config.cluster.v3.Cluster mcc-upstream-api-4", "config.endpoint.v3.ClusterLoadAssignment mcc-upstream-api-4")
}

// TestTranslatorKeepsTheLastGoodBuild: a failed build does not make the
// translator forget, and the next good build reuses what it remembered.
func TestTranslatorKeepsTheLastGoodBuild(t *testing.T) {
	f := xdstest.NewFixture(t, 3)
	tr := translate.NewTranslator()
	good, err := tr.Build(f.Input)
	if err != nil {
		t.Fatal(err)
	}
	ca := f.Input.Sets["app-1"].CAPEM
	f.Input.Sets["app-1"].CAPEM = nil
	if _, err := tr.Build(f.Input); err == nil {
		t.Fatal("a set without a CA was translated")
	}
	f.Input.Sets["app-1"].CAPEM = ca
	again, err := tr.Build(f.Input)
	if err != nil {
		t.Fatal(err)
	}
	if got := rebuilt(good["edge"], again["edge"]); len(got) != 0 {
		t.Errorf("rebuilt %v after a failed build", got)
	}
}

// TestTranslatorKeysCoverEveryInput: the Translator reuses a resource while
// the inputs in its key are unchanged, so a new input field that is not in
// a key would leave Envoy with stale resources. This lists the fields the
// keys were written for; a new one fails here until it is added to the
// right key in build.go (and to this list).
func TestTranslatorKeysCoverEveryInput(t *testing.T) {
	for typ, want := range map[reflect.Type]string{
		reflect.TypeOf(translate.FusionSet{}): "ID Mode IdentityURI CAPEM CRLPEM SPKIPins",
		reflect.TypeOf(gateway.Listener{}):    "Name Address Port CertFile KeyFile CertPEM KeyPEM Delivery EnvoyCertPath EnvoyKeyPath Routes",
		reflect.TypeOf(gateway.Route{}):       "Host PathPrefix FusionSet Upstream",
		reflect.TypeOf(gateway.Upstream{}):    "Name Endpoints HTTP2 ConnectTimeout",
		reflect.TypeOf(gateway.Endpoint{}):    "IP Port",
		reflect.TypeOf(gateway.Authz{}):       "Address Timeout AccessLogAddress TLS",
		reflect.TypeOf(gateway.UpstreamTLS{}): "CAFile CertFile KeyFile ServerName",
	} {
		var got []string
		for i := range typ.NumField() {
			if f := typ.Field(i); f.IsExported() {
				got = append(got, f.Name)
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s has fields %v; the Translator's keys were written for %s", typ, got, want)
		}
	}
}
