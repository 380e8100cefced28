package serve_test

import (
	"context"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/xdstest"
)

// xdsClient is what the SotW and delta test clients have in common.
type xdsClient interface {
	View() xdstest.View
	Wait(ctx context.Context, cond func(xdstest.View) bool) (xdstest.View, error)
	Close()
}

type protocol struct {
	name  string
	start func(ctx context.Context, t *testing.T, addr, id string, reject xdstest.RejectFunc) xdsClient
}

var protocols = []protocol{
	{"sotw", func(ctx context.Context, t *testing.T, addr, id string, reject xdstest.RejectFunc) xdsClient {
		c, err := xdstest.StartSotW(ctx, dial(t, addr), node(id, "edge"), reject)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}},
	{"delta", func(ctx context.Context, t *testing.T, addr, id string, reject xdstest.RejectFunc) xdsClient {
		c, err := xdstest.StartDelta(ctx, dial(t, addr), node(id, "edge"), reject)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}},
}

// serving holds when the client has accepted exactly the resources the
// control plane serves to group now. (Versions do not tell: delta sends only
// changed resources, so an unchanged type keeps its old system version.)
func serving(t *testing.T, h *harness, group string) func(xdstest.View) bool {
	return func(view xdstest.View) bool {
		snap, err := h.cp.Snapshot(group)
		if err != nil {
			return false
		}
		for _, typ := range allTypes {
			want := snap.GetResources(typ)
			got := view.Resources[typ]
			if len(got) != len(want) {
				return false
			}
			for name, r := range want {
				a, ok := got[name]
				if !ok {
					return false
				}
				m, err := a.UnmarshalNew()
				if err != nil || !proto.Equal(m, r) {
					return false
				}
			}
		}
		return true
	}
}

func TestSubscribeLikeEnvoyAndReceiveUpdates(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			h := start(t, "")
			f := xdstest.NewFixture(t, 2)
			h.publish(t, "cfg-1", f.Build(t))
			v1 := version(t, h, "edge")

			c := p.start(context.Background(), t, h.addr, "envoy-1", nil)
			view, err := c.Wait(waitCtx(t), serving(t, h, "edge"))
			if err != nil {
				t.Fatalf("first configuration: %v (have %v)", err, view.Versions)
			}
			want := map[string][]string{
				resourcev3.ListenerType: {"mcc-listener-edge"},
				resourcev3.RouteType:    {"mcc-routes-edge/app-0", "mcc-routes-edge/app-1"},
				resourcev3.ClusterType:  {"mcc-authz", "mcc-upstream-api-0", "mcc-upstream-api-1"},
				resourcev3.EndpointType: {"mcc-authz", "mcc-upstream-api-0", "mcc-upstream-api-1"},
				resourcev3.SecretType:   {"mcc-server-cert-edge", "mcc-validation-app-0", "mcc-validation-app-1"},
			}
			for typ, names := range want {
				if got := view.Names(typ); !equal(got, names) {
					t.Errorf("%s: got %v, want %v", typ, got, names)
				}
			}
			if n := view.TotalNACKs(); n != 0 {
				t.Errorf("NACKs = %d", n)
			}

			// The status page follows the ACKs.
			lv1, sv1 := typeVersion(t, h, "edge", resourcev3.ListenerType), typeVersion(t, h, "edge", resourcev3.SecretType)
			waitStatus(t, h, func(s serve.Status) bool {
				return len(s.Nodes) == 1 && s.Nodes[0].ID == "envoy-1" && s.Nodes[0].Connected &&
					s.Nodes[0].Acked["listener"] == lv1 && s.Nodes[0].Acked["secret"] == sv1 &&
					groupStatus(s, "edge").LastACKedVersion == v1
			})

			// A change reaches the client.
			f.AddRoute("new.example.com", "app-1")
			published := time.Now()
			h.publish(t, "cfg-2", f.Build(t))
			v2 := version(t, h, "edge")
			if v2 == v1 {
				t.Fatal("a changed configuration kept its version")
			}
			if _, err := c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
				t.Fatalf("second configuration: %v", err)
			}
			t.Logf("%s: change reached the client in %v", p.name, time.Since(published))

			// The same resources again publish nothing new.
			h.publish(t, "cfg-3", f.Build(t))
			if v := version(t, h, "edge"); v != v2 {
				t.Errorf("unchanged resources got a new version %s", v)
			}
		})
	}
}

func TestNACKRollsTheGroupBackWithoutAStorm(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			h := start(t, "")
			f := xdstest.NewFixture(t, 2)
			h.publish(t, "good", f.Build(t))
			v1 := version(t, h, "edge")
			c := p.start(context.Background(), t, h.addr, "envoy-nack", rejectHost("bad.example.com"))
			if _, err := c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, h, func(s serve.Status) bool { return groupStatus(s, "edge").LastACKedVersion == v1 })

			f.AddRoute("bad.example.com", "app-0")
			bad := f.Build(t)
			// Computed, not read back: the rollback may come first.
			v2, byType, err := serve.Versions(bad["edge"])
			if err != nil {
				t.Fatal(err)
			}
			lv2 := byType[resourcev3.ListenerType]
			h.publish(t, "bad", bad)

			// The node NACKs the listener; the group goes back to v1.
			view, err := c.Wait(waitCtx(t), func(v xdstest.View) bool { return v.NACKs[resourcev3.ListenerType] >= 1 })
			if err != nil {
				t.Fatal(err)
			}
			s := waitStatus(t, h, func(s serve.Status) bool {
				g := groupStatus(s, "edge")
				return g.Version == v1 && g.RolledBackFrom == v2
			})
			n := s.Nodes[0]
			if n.LastNACK == nil || n.LastNACK.Type != "listener" || n.LastNACK.Version != lv2 || contains(n.LastNACK.Message, "bad.example.com") != nil {
				t.Errorf("last NACK on status = %+v", n.LastNACK)
			}
			if g := groupStatus(s, "edge"); g.Rejected["listener "+lv2] == "" {
				t.Errorf("rejected versions = %v", g.Rejected)
			}
			// Every type ends at v1 again (the client never accepted a v2 listener).
			if view, err = c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
				t.Fatalf("after rollback: %v (versions %v)", err, view.Versions)
			}

			// No storm: let the stream run, then count. go-control-plane
			// alone resends the rejected snapshot thousands of times a second.
			time.Sleep(500 * time.Millisecond)
			view = c.View()
			t.Logf("%s: %d NACKs for %d listener responses", p.name, view.NACKs[resourcev3.ListenerType], view.Responses[resourcev3.ListenerType])
			if got := view.TotalNACKs(); got > 2 {
				t.Errorf("NACKs = %d, want at most 2 (a NACK storm)", got)
			}

			// Publishing the rejected configuration again sends nothing.
			h.publish(t, "bad-again", f.Build(t))
			if v := version(t, h, "edge"); v != v1 {
				t.Errorf("rejected version was published again: %s", v)
			}

			// A fixed configuration goes out normally.
			l := f.Input.Gateway.Listeners[0]
			l.Routes = l.Routes[:len(l.Routes)-1]
			f.AddRoute("good.example.com", "app-0")
			h.publish(t, "fixed", f.Build(t))
			if v3 := version(t, h, "edge"); v3 == v1 || v3 == v2 {
				t.Fatalf("fixed configuration not published: %s", v3)
			}
			if _, err := c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
				t.Fatalf("fixed configuration: %v", err)
			}
		})
	}
}

func TestNACKOfTheFirstSnapshotHolds(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			h := start(t, "")
			f := xdstest.NewFixture(t, 1)
			f.AddRoute("bad.example.com", "app-0")
			h.publish(t, "bad", f.Build(t))
			c := p.start(context.Background(), t, h.addr, "envoy-first", rejectHost("bad.example.com"))
			if _, err := c.Wait(waitCtx(t), func(v xdstest.View) bool { return v.NACKs[resourcev3.ListenerType] >= 1 }); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			if got := c.View().TotalNACKs(); got > 2 {
				t.Errorf("NACKs = %d with nothing to roll back to, want at most 2", got)
			}
			// The next configuration still goes out.
			l := f.Input.Gateway.Listeners[0]
			l.Routes = l.Routes[:len(l.Routes)-1]
			h.publish(t, "fixed", f.Build(t))
			if _, err := c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGroupsAreSeparate(t *testing.T) {
	h := start(t, "")
	f := xdstest.NewFixture(t, 1)
	groups := f.Build(t)
	groups["other"] = groups["edge"]
	h.publish(t, "cfg", groups)
	cc := dial(t, h.addr)
	c, err := xdstest.StartSotW(context.Background(), cc, node("stray", "nobody"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitStatus(t, h, func(s serve.Status) bool { return len(s.Nodes) == 1 })
	if !s.Nodes[0].UnknownCluster {
		t.Errorf("node of an unknown cluster not flagged: %+v", s.Nodes[0])
	}
	if got := c.View().Responses; len(got) != 0 {
		t.Errorf("a node of no group got responses: %v", got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func groupStatus(s serve.Status, cluster string) serve.GroupStatus {
	for _, g := range s.Groups {
		if g.Cluster == cluster {
			return g
		}
	}
	return serve.GroupStatus{}
}

// waitStatus polls the status until cond holds.
func waitStatus(t *testing.T, h *harness, cond func(serve.Status) bool) serve.Status {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		s := h.cp.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never reached the expected state: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
