package serve_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// testTimeout is generous: the machine may be loaded; nothing asserts speed.
const testTimeout = 30 * time.Second

type harness struct {
	cp    *serve.ControlPlane
	addr  string
	admin *httptest.Server
}

// start runs a control plane on a loopback port for the test's lifetime.
func start(t *testing.T, token string) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	cp := serve.New(ctx, serve.Options{Logger: logger})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(cp.ServerOptions()...)
	cp.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	admin := httptest.NewServer(cp.AdminHandler(token))
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		admin.Close()
	})
	return &harness{cp: cp, addr: lis.Addr().String(), admin: admin}
}

func (h *harness) publish(t *testing.T, version string, groups map[string]translate.Resources) {
	t.Helper()
	if err := h.cp.Publish(context.Background(), serve.Update{ConfigVersion: version, Groups: groups}); err != nil {
		t.Fatalf("Publish %s: %v", version, err)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func node(id, cluster string) *corev3.Node { return &corev3.Node{Id: id, Cluster: cluster} }

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// version returns the id of the snapshot the control plane serves to group.
func version(t *testing.T, h *harness, group string) string {
	t.Helper()
	v := h.cp.Version(group)
	if v == "" {
		t.Fatalf("no snapshot for group %s", group)
	}
	return v
}

// typeVersion returns the version of one resource type served to group.
func typeVersion(t *testing.T, h *harness, group, typ string) string {
	t.Helper()
	snap, err := h.cp.Snapshot(group)
	if err != nil {
		t.Fatal(err)
	}
	return snap.GetVersion(typ)
}

// allTypes are the types an Envoy of the fixture subscribes to.
var allTypes = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType}

// rejectHost NACKs listener responses whose filter chains serve host.
func rejectHost(host string) xdstest.RejectFunc { return xdstest.RejectServerName(host) }

func contains(s string, subs ...string) error {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return fmt.Errorf("missing %q", sub)
		}
	}
	return nil
}
