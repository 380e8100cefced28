package serve_test

import (
	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

func TestPublishRefusesBadSnapshotsAndKeepsServing(t *testing.T) {
	h := start(t, "")
	f := xdstest.NewFixture(t, 2)
	h.publish(t, "good", f.Build(t))
	v1 := version(t, h, "edge")
	lv1 := typeVersion(t, h, "edge", resourcev3.ListenerType)
	c, err := xdstest.StartSotW(context.Background(), dial(t, h.addr), node("envoy-1", "edge"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		break_ func(res translate.Resources)
		want   []string
	}{
		{"invalid resource inside an Any", func(res translate.Resources) {
			for _, r := range res[resourcev3.SecretType] {
				if vc := r.(*tlsv3.Secret).GetValidationContext(); vc != nil {
					vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{})
				}
			}
		}, []string{`node group "edge": secret "mcc-validation-app-0"`, "SanType"}},
		{"inconsistent snapshot", func(res translate.Resources) {
			res[resourcev3.RouteType] = nil
		}, []string{`node group "edge": inconsistent snapshot`}},
		{"bad listener", func(res translate.Resources) {
			res[resourcev3.ListenerType][0].(*listenerv3.Listener).GetAddress().GetSocketAddress().PortSpecifier =
				&corev3.SocketAddress_PortValue{PortValue: 70000}
		}, []string{`listener "mcc-listener-edge"`, "PortValue"}},
		{"route configuration nobody references", func(res translate.Resources) {
			res[resourcev3.RouteType] = append(res[resourcev3.RouteType], &routev3.RouteConfiguration{Name: "mcc-routes-orphan"})
		}, []string{`node group "edge": inconsistent snapshot`, `route "mcc-routes-orphan" is in the snapshot but nothing references it`}},
		{"EDS cluster without its endpoints", func(res translate.Resources) {
			res[resourcev3.EndpointType] = res[resourcev3.EndpointType][1:]
		}, []string{`node group "edge": inconsistent snapshot`, `endpoint "mcc-authz" is referenced but not in the snapshot`}},
		{"missing secret (Consistent does not look)", func(res translate.Resources) {
			res[resourcev3.SecretType] = res[resourcev3.SecretType][1:]
		}, []string{`secret "mcc-server-cert-edge" is referenced but not in the snapshot`}},
		{"unreferenced secret (would stall SDS in ADS mode)", func(res translate.Resources) {
			res[resourcev3.SecretType] = append(res[resourcev3.SecretType], &tlsv3.Secret{Name: "mcc-validation-gone",
				Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{}}})
		}, []string{`secret "mcc-validation-gone" is in the snapshot but nothing references it`}},
		{"route to a missing cluster", func(res translate.Resources) {
			vh := res[resourcev3.RouteType][0].(*routev3.RouteConfiguration).VirtualHosts[0]
			vh.Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "mcc-upstream-nowhere"}
		}, []string{`cluster "mcc-upstream-nowhere" is referenced but not in the snapshot`}},
		{"ext_authz cluster missing", func(res translate.Resources) {
			res[resourcev3.ClusterType] = res[resourcev3.ClusterType][1:]
			res[resourcev3.EndpointType] = res[resourcev3.EndpointType][1:]
		}, []string{`cluster "mcc-authz" is referenced but not in the snapshot`}},
		{"virtual host without domains", func(res translate.Resources) {
			res[resourcev3.RouteType][0].(*routev3.RouteConfiguration).VirtualHosts[0].Domains = nil
		}, []string{`route "mcc-routes-edge/app-0"`, "Domains"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			groups := f.Build(t)
			// Build shares protos between groups; break a private copy.
			res := translate.Resources{}
			for typ, rs := range groups["edge"] {
				for _, r := range rs {
					res[typ] = append(res[typ], proto.Clone(r))
				}
			}
			tc.break_(res)
			err := h.cp.Publish(context.Background(), serve.Update{ConfigVersion: "broken", Groups: map[string]translate.Resources{"edge": res}})
			if err == nil {
				t.Fatal("a bad snapshot was published")
			}
			if e := contains(err.Error(), tc.want...); e != nil {
				t.Errorf("error %v: %v", err, e)
			}
			if v := version(t, h, "edge"); v != v1 {
				t.Errorf("serving %s, want the last good %s", v, v1)
			}
			s := h.cp.Status()
			if s.Config.Version != "good" || !strings.Contains(s.Config.LastLoadError, tc.want[0]) {
				t.Errorf("status config = %+v", s.Config)
			}
		})
	}
	if view := c.View(); view.TotalNACKs() != 0 || view.Versions[resourcev3.ListenerType] != lv1 {
		t.Errorf("client moved: %v", view.Versions)
	}
}
