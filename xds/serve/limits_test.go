package serve_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// TestPeersChangeEndsTheStream: a configuration that takes a group away
// from a connected Envoy's certificate ends its stream before the new
// resources reach it.
func TestPeersChangeEndsTheStream(t *testing.T) {
	h := startMTLS(t, serve.Options{})
	f := xdstest.NewFixture(t, 1)
	twoGroups(t, h.harness, f, "cfg-1", nil)
	edge := h.ca.IssuePeer(t, "envoy-edge", edgePeer)
	c, err := xdstest.StartSotW(context.Background(), xdstest.DialTLS(t, h.addr, "localhost", h.ca, edge), node("envoy-1", "edge"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.Wait(waitCtx(t), serving(t, h.harness, "edge")); err != nil {
		t.Fatal(err)
	}
	f.AddRoute("new.example.com", "app-0")
	twoGroups(t, h.harness, f, "cfg-2", map[string][]string{"edge": {otherPeer}, "other": {otherPeer}})
	view, err := c.Wait(waitCtx(t), func(xdstest.View) bool { return false })
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("stream after losing the group: %v, want PermissionDenied", err)
	}
	if serving(t, h.harness, "edge")(view) {
		t.Error("the new configuration reached a certificate that is no longer a peer")
	}
}

// TestPlaintextCannotActAsAGroupWithPeers: without client certificates
// (loopback plaintext) nobody can prove to be a peer, so a group that
// lists peers is served to no one; a group without peers still is.
func TestPlaintextCannotActAsAGroupWithPeers(t *testing.T) {
	h := startWith(t, serve.Options{})
	res := xdstest.NewFixture(t, 1).Build(t)["edge"]
	err := h.cp.Publish(context.Background(), serve.Update{ConfigVersion: "cfg-1",
		Groups: map[string]translate.Resources{"edge": res, "open": res}, Peers: map[string][]string{"edge": {edgePeer}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rawADS(t, dial(t, h.addr), ldsRequest("rogue", "edge"))
	wantCode(t, "plaintext client of a group with peers", resp, err, codes.PermissionDenied, "presented none")
	if resp, err := rawADS(t, dial(t, h.addr), ldsRequest("local", "open")); err != nil || len(resp.GetResources()) != 1 {
		t.Fatalf("plaintext client of a group without peers: %v %v", resp, err)
	}
}

// TestNodeFloodIsBounded: a client cycling through node ids cannot grow
// the node table past MaxNodes; once all tracked nodes are connected, new
// ones are refused.
func TestNodeFloodIsBounded(t *testing.T) {
	const max = 3
	h := startWith(t, serve.Options{MaxNodes: max})
	h.publish(t, "cfg-1", xdstest.NewFixture(t, 1).Build(t))
	cc := dial(t, h.addr)
	for i := range 12 {
		ctx, cancel := context.WithCancel(waitCtx(t))
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("flood-%d", i)
		if err := stream.Send(ldsRequest(id, "edge")); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("node %s: %v", id, err)
		}
		cancel()
		waitStatus(t, h, func(s serve.Status) bool {
			for _, n := range s.Nodes {
				if n.ID == id {
					return !n.Connected
				}
			}
			return false
		})
		if n := len(h.cp.Status().Nodes); n > max {
			t.Fatalf("after %d nodes the status tracks %d, want at most %d", i+1, n, max)
		}
	}
	// Three connected nodes fill the table: a fourth is refused.
	for i := range max {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(waitCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(ldsRequest(fmt.Sprintf("held-%d", i), "edge")); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := rawADS(t, cc, ldsRequest("one-too-many", "edge"))
	wantCode(t, "node beyond MaxNodes", resp, err, codes.ResourceExhausted, "at most 3 nodes")
}

// TestStreamLimits: MaxStreams over all connections, and the request size
// cap.
func TestStreamLimits(t *testing.T) {
	h := startWith(t, serve.Options{MaxStreams: 2})
	h.publish(t, "cfg-1", xdstest.NewFixture(t, 1).Build(t))
	for i := range 2 {
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, h.addr)).StreamAggregatedResources(waitCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(ldsRequest(fmt.Sprintf("envoy-%d", i), "edge")); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := rawADS(t, dial(t, h.addr), ldsRequest("third", "edge"))
	wantCode(t, "stream beyond MaxStreams", resp, err, codes.ResourceExhausted, "at most 2 xDS streams")

	// A request larger than DefaultMaxRecvMsgSize is refused by gRPC
	// before the control plane decodes it.
	h = startWith(t, serve.Options{})
	h.publish(t, "cfg-1", xdstest.NewFixture(t, 1).Build(t))
	big := ldsRequest("big", "edge")
	big.ResourceNames = []string{strings.Repeat("x", serve.DefaultMaxRecvMsgSize+1)}
	resp, err = rawADS(t, dial(t, h.addr), big)
	wantCode(t, "oversized request", resp, err, codes.ResourceExhausted, "larger than max")
}

// TestHugeNACKDetailIsTruncated: a NACK's error_detail is kept up to
// MaxNACKDetail bytes on the status page and in the group's rejections.
func TestHugeNACKDetailIsTruncated(t *testing.T) {
	h := startWith(t, serve.Options{})
	f := xdstest.NewFixture(t, 1)
	h.publish(t, "cfg-1", f.Build(t))
	huge := strings.Repeat("é", 300_000) // 600 KB, multi-byte runes
	reject := func(typ string, _ map[string]*anypb.Any) error {
		if typ == resourcev3.ListenerType {
			return fmt.Errorf("%s", huge)
		}
		return nil
	}
	c, err := xdstest.StartSotW(context.Background(), dial(t, h.addr), node("envoy-1", "edge"), reject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := waitStatus(t, h, func(s serve.Status) bool { return len(s.Nodes) == 1 && s.Nodes[0].LastNACK != nil })
	msg := s.Nodes[0].LastNACK.Message
	if len(msg) > serve.DefaultMaxNACKDetail+64 || !strings.Contains(msg, "truncated, 600000 bytes in all") {
		t.Fatalf("NACK detail kept: %d bytes, ends %q", len(msg), msg[max(0, len(msg)-80):])
	}
	if !strings.HasPrefix(msg, "éé") || strings.ContainsRune(msg, '\uFFFD') {
		t.Error("truncation broke a UTF-8 character")
	}
	for _, r := range groupStatus(s, "edge").Rejected {
		if len(r) > serve.DefaultMaxNACKDetail+64 {
			t.Errorf("group rejection kept %d bytes", len(r))
		}
	}
}
