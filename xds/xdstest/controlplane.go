package xdstest

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mccgate/mcc/xds/serve"
)

// ControlPlane is a real mcc xds control plane (gRPC on a loopback port,
// its admin handler with a token) for the gateways view to read.
type ControlPlane struct {
	CP        *serve.ControlPlane
	Addr      string
	StatusURL string // the admin port's /status URL
	TokenFile string // the admin token, in a file as mcc xds reads it
	Fixture   *Fixture
}

// StartControlPlane serves NewFixture(t, 2) as version "v1".
func StartControlPlane(t *testing.T) *ControlPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cp := serve.New(ctx, serve.Options{Logger: zap.NewNop()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(cp.ServerOptions()...)
	cp.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	const token = "xds-admin-token-for-the-console-test"
	admin := httptest.NewServer(cp.AdminHandler(token))
	t.Cleanup(func() { cancel(); gs.Stop(); admin.Close() })
	tokenFile := filepath.Join(t.TempDir(), "xds-admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &ControlPlane{CP: cp, Addr: lis.Addr().String(), StatusURL: admin.URL + "/status", TokenFile: tokenFile,
		Fixture: NewFixture(t, 2)}
	c.Publish(t, "v1")
	return c
}

// Publish publishes the fixture as it is now.
func (c *ControlPlane) Publish(t *testing.T, version string) {
	t.Helper()
	groups := c.Fixture.Build(t)
	if err := c.CP.Publish(context.Background(), serve.Update{ConfigVersion: version, Groups: groups}); err != nil {
		t.Fatal(err)
	}
}

// Envoy connects an ADS client as Envoy node id would; reject, when not
// nil, NACKs what it refuses.
func (c *ControlPlane) Envoy(t *testing.T, id string, reject RejectFunc) *SotWClient {
	t.Helper()
	cc, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	cl, err := StartSotW(context.Background(), cc, &corev3.Node{Id: id, Cluster: "edge"}, reject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// WaitStatus polls the control plane until cond holds.
func (c *ControlPlane) WaitStatus(t *testing.T, what string, cond func(serve.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(c.CP.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("the control plane never got to %s: %+v", what, c.CP.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RejectServerName NACKs listeners that serve host, as an Envoy refusing a
// bad filter chain would.
func RejectServerName(host string) RejectFunc {
	return func(typ string, res map[string]*anypb.Any) error {
		if typ != resourcev3.ListenerType {
			return nil
		}
		for name, a := range res {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				return err
			}
			for _, fc := range l.FilterChains {
				for _, sn := range fc.GetFilterChainMatch().GetServerNames() {
					if sn == host {
						return &rejection{"listener " + name + ": server name " + host + " refused by the test"}
					}
				}
			}
		}
		return nil
	}
}

type rejection struct{ msg string }

func (r *rejection) Error() string { return r.msg }
