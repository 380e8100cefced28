package serve_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

const (
	edgePeer  = "spiffe://mcc/envoy/edge"
	otherPeer = "spiffe://mcc/envoy/other"
)

// mtlsHarness is a control plane behind a real mTLS gRPC listener, set up
// with the flags `mcc xds` uses (--tls-cert, --tls-key, --client-ca).
type mtlsHarness struct {
	*harness
	ca *xdstest.CA // signs the server's and the Envoys' certificates
}

func startMTLS(t *testing.T, o serve.Options) *mtlsHarness {
	t.Helper()
	dir := t.TempDir()
	ca := xdstest.NewCA(t, "control CA")
	server := ca.IssueServer(t, "localhost")
	flags := secure.ServerFlags{
		CertFile:     xdstest.WriteFile(t, dir, "xds.pem", server.CertPEM),
		KeyFile:      xdstest.WriteFile(t, dir, "xds-key.pem", server.KeyPEM),
		ClientCAFile: xdstest.WriteFile(t, dir, "ca.pem", ca.CertPEM),
	}
	creds, err := flags.GRPCCredentials()
	if err != nil {
		t.Fatal(err)
	}
	return &mtlsHarness{harness: startWith(t, o, grpc.Creds(creds)), ca: ca}
}

// startWith runs a control plane with options o on a loopback port.
func startWith(t *testing.T, o serve.Options, extra ...grpc.ServerOption) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o.Logger = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	cp := serve.New(ctx, o)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(cp.ServerOptions(extra...)...)
	cp.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	admin := httptest.NewServer(cp.AdminHandler(""))
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		admin.Close()
	})
	return &harness{cp: cp, addr: lis.Addr().String(), admin: admin}
}

// twoGroups publishes the fixture to groups "edge" and "other", each with
// its own peer.
func twoGroups(t *testing.T, h *harness, f *xdstest.Fixture, version string, peers map[string][]string) {
	t.Helper()
	res := f.Build(t)["edge"]
	if peers == nil {
		peers = map[string][]string{"edge": {edgePeer}, "other": {otherPeer}}
	}
	err := h.cp.Publish(context.Background(), serve.Update{ConfigVersion: version,
		Groups: map[string]translate.Resources{"edge": res, "other": res}, Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
}

// rawADS opens an ADS stream on cc and sends reqs; it returns the first
// response or the error that ended the stream.
func rawADS(t *testing.T, cc *grpc.ClientConn, reqs ...*discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	t.Helper()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(waitCtx(t))
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	return stream.Recv()
}

func wantCode(t *testing.T, what string, resp *discoveryv3.DiscoveryResponse, err error, code codes.Code, msg string) {
	t.Helper()
	if resp != nil {
		t.Fatalf("%s: got a %s response with %d resources, want no response at all", what, resp.GetTypeUrl(), len(resp.GetResources()))
	}
	if status.Code(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: err = %v, want %s containing %q", what, err, code, msg)
	}
}

func ldsRequest(id, cluster string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, Node: node(id, cluster)}
}

// TestRogueClientsAreRefusedOverMTLS drives the real listener the way the
// attack did: an ADS client that is not the group's Envoy asks for the
// group's resources (which hold the listener's private key inline).
func TestRogueClientsAreRefusedOverMTLS(t *testing.T) {
	h := startMTLS(t, serve.Options{})
	twoGroups(t, h.harness, xdstest.NewFixture(t, 1), "cfg-1", nil)

	// No client certificate: the handshake fails, nothing is served.
	resp, err := rawADS(t, xdstest.DialTLS(t, h.addr, "localhost", h.ca, nil), ldsRequest("rogue", "edge"))
	if resp != nil || err == nil {
		t.Fatalf("client without a certificate: resp=%v err=%v", resp, err)
	}
	// A certificate from another CA, even with the right identity.
	stranger := xdstest.NewCA(t, "stranger CA").IssuePeer(t, "envoy-edge", edgePeer)
	resp, err = rawADS(t, xdstest.DialTLS(t, h.addr, "localhost", h.ca, stranger), ldsRequest("rogue", "edge"))
	if resp != nil || err == nil {
		t.Fatalf("client with another CA's certificate: resp=%v err=%v", resp, err)
	}
	// Plaintext gets nowhere either.
	if resp, err = rawADS(t, dial(t, h.addr), ldsRequest("rogue", "edge")); resp != nil || err == nil {
		t.Fatalf("plaintext client: resp=%v err=%v", resp, err)
	}

	// A valid certificate of group "other" claiming group "edge".
	other := h.ca.IssuePeer(t, "envoy-other", otherPeer)
	resp, err = rawADS(t, xdstest.DialTLS(t, h.addr, "localhost", h.ca, other), ldsRequest("rogue", "edge"))
	wantCode(t, "peer of another group", resp, err, codes.PermissionDenied, `not a peer of node group "edge"`)
	// A certificate the CA signed with no identity of any group.
	nobody := h.ca.IssuePeer(t, "someone")
	resp, err = rawADS(t, xdstest.DialTLS(t, h.addr, "localhost", h.ca, nobody), ldsRequest("rogue", "edge"))
	wantCode(t, "unlisted certificate", resp, err, codes.PermissionDenied, "not a peer")
	// A cluster that is no group.
	resp, err = rawADS(t, xdstest.DialTLS(t, h.addr, "localhost", h.ca, other), ldsRequest("rogue", "nope"))
	wantCode(t, "unknown cluster", resp, err, codes.PermissionDenied, "is no node group")

	// The right Envoy is served, but cannot switch to another group on
	// its stream.
	edge := h.ca.IssuePeer(t, "envoy-edge", edgePeer)
	cc := xdstest.DialTLS(t, h.addr, "localhost", h.ca, edge)
	resp, err = rawADS(t, cc, ldsRequest("envoy-1", "edge"))
	if err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("the edge Envoy: resp=%v err=%v", resp, err)
	}
	_, err = rawADSUntilEnd(t, cc, ldsRequest("envoy-1", "edge"),
		&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, Node: node("envoy-1", "other")})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("switching node on a stream: %v, want PermissionDenied", err)
	}

	// The unary Fetch RPCs are guarded the same way.
	_, err = listenerservice.NewListenerDiscoveryServiceClient(xdstest.DialTLS(t, h.addr, "localhost", h.ca, other)).
		FetchListeners(waitCtx(t), ldsRequest("rogue", "edge"))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("FetchListeners by a peer of another group: %v, want PermissionDenied", err)
	}

	// Only the edge Envoy is on the status page; the refusals are counted.
	s := h.cp.Status()
	for _, n := range s.Nodes {
		if n.ID == "rogue" {
			t.Errorf("a refused client is on the status page: %+v", n)
		}
	}
	if _, body := get(t, h.admin.URL+"/metrics", ""); !strings.Contains(body, `mcc_xds_refused_streams_total{reason="not_a_peer"} 3`) {
		t.Errorf("metrics lack the refusals:\n%s", grepLines(body, "refused"))
	}
}

// rawADSUntilEnd sends reqs on a new ADS stream and reads until the
// stream ends; it returns how many responses came and the final error.
func rawADSUntilEnd(t *testing.T, cc *grpc.ClientConn, reqs ...*discoveryv3.DiscoveryRequest) (int, error) {
	t.Helper()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(waitCtx(t))
	if err != nil {
		return 0, err
	}
	for _, r := range reqs {
		if err := stream.Send(r); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	for n := 0; ; n++ {
		if _, err := stream.Recv(); err != nil {
			return n, err
		}
	}
}

func rejectAll(string, map[string]*anypb.Any) error { return errors.New("rogue NACK") }

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRogueNACKsDoNotRollBackTheRealEnvoy: a client with a valid
// certificate that is not the group's peer NACKs everything it can; the
// real Envoy keeps getting new configurations and nothing is rolled back
// or blamed on the status page.
func TestRogueNACKsDoNotRollBackTheRealEnvoy(t *testing.T) {
	for _, p := range []string{"sotw", "delta"} {
		t.Run(p, func(t *testing.T) {
			h := startMTLS(t, serve.Options{})
			f := xdstest.NewFixture(t, 2)
			twoGroups(t, h.harness, f, "cfg-1", nil)

			edge := h.ca.IssuePeer(t, "envoy-edge", edgePeer)
			var real xdsClient
			if p == "delta" {
				c, err := xdstest.StartDelta(context.Background(), xdstest.DialTLS(t, h.addr, "localhost", h.ca, edge), node("envoy-1", "edge"), nil)
				if err != nil {
					t.Fatal(err)
				}
				real = c
			} else {
				c, err := xdstest.StartSotW(context.Background(), xdstest.DialTLS(t, h.addr, "localhost", h.ca, edge), node("envoy-1", "edge"), nil)
				if err != nil {
					t.Fatal(err)
				}
				real = c
			}
			t.Cleanup(real.Close)
			if _, err := real.Wait(waitCtx(t), serving(t, h.harness, "edge")); err != nil {
				t.Fatal(err)
			}

			// The rogue: a certificate of the same CA, peer of "other",
			// claiming "edge", NACKing whatever it gets.
			other := h.ca.IssuePeer(t, "envoy-other", otherPeer)
			rogueCC := xdstest.DialTLS(t, h.addr, "localhost", h.ca, other)
			// The refusal may end the stream while the client still
			// subscribes (Start fails) or right after (Wait fails).
			var rogue xdsClient
			var err error
			if p == "delta" {
				var c *xdstest.DeltaClient
				if c, err = xdstest.StartDelta(context.Background(), rogueCC, node("rogue", "edge"), rejectAll); err == nil {
					rogue = c
				}
			} else {
				var c *xdstest.SotWClient
				if c, err = xdstest.StartSotW(context.Background(), rogueCC, node("rogue", "edge"), rejectAll); err == nil {
					rogue = c
				}
			}
			if rogue != nil {
				t.Cleanup(rogue.Close)
				var view xdstest.View
				view, err = rogue.Wait(waitCtx(t), func(xdstest.View) bool { return false })
				if n := len(view.Responses); n != 0 {
					t.Fatalf("rogue received %d responses", n)
				}
			}
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("rogue stream: %v, want PermissionDenied", err)
			}
			// Even a forged NACK as the first message is refused before
			// it counts.
			_, err = rawADS(t, rogueCC, &discoveryv3.DiscoveryRequest{
				TypeUrl: resourcev3.SecretType, Node: node("rogue", "edge"), VersionInfo: "x", ResponseNonce: "1",
				ErrorDetail: &rpcstatus.Status{Code: 3, Message: "rogue NACK"},
			})
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("forged NACK: %v", err)
			}

			// A new configuration (a new CRL, say) reaches the real Envoy.
			f.AddRoute("new.example.com", "app-1")
			twoGroups(t, h.harness, f, "cfg-2", nil)
			if _, err := real.Wait(waitCtx(t), serving(t, h.harness, "edge")); err != nil {
				t.Fatal(err)
			}
			v2 := version(t, h.harness, "edge")
			s := waitStatus(t, h.harness, func(s serve.Status) bool { return groupStatus(s, "edge").LastACKedVersion == v2 })
			g := groupStatus(s, "edge")
			if g.RolledBackFrom != "" || len(g.Rejected) != 0 {
				t.Errorf("the rogue rolled the group back: %+v", g)
			}
			for _, n := range s.Nodes {
				if n.ID == "rogue" || n.LastNACK != nil {
					t.Errorf("status blames a node: %+v", n)
				}
			}
			if n := real.View().TotalNACKs(); n != 0 {
				t.Errorf("real Envoy NACKs = %d", n)
			}
		})
	}
}
