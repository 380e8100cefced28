package xdstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// DeltaClient is an incremental (delta) ADS client on a raw
// DeltaAggregatedResources stream, subscribing like Envoy with
// api_type DELTA_GRPC: LDS and CDS as wildcards, then RDS, SDS and EDS by
// name, applying added, changed and removed resources, ACKing each response
// or NACKing it when Reject says so.
type DeltaClient struct {
	*state
	stream     discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	reject     RejectFunc
	subscribed map[string][]string
}

// StartDelta opens a delta ADS stream on cc and subscribes. reject may be nil.
func StartDelta(ctx context.Context, cc grpc.ClientConnInterface, node *corev3.Node, reject RejectFunc) (*DeltaClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening delta ADS stream: %w", err)
	}
	c := &DeltaClient{state: newState(cancel), stream: stream, reject: reject,
		subscribed: map[string][]string{}}
	for i, typ := range wildcardTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node // only a stream's first request carries the node
		}
		if err := stream.Send(req); err != nil {
			// gRPC reports a stream the server ended as io.EOF on Send;
			// the server's status (PermissionDenied, ...) comes from Recv.
			if errors.Is(err, io.EOF) {
				if _, rerr := stream.Recv(); rerr != nil {
					err = rerr
				}
			}
			cancel()
			return nil, fmt.Errorf("subscribing to %s: %w", typ, err)
		}
	}
	go c.run()
	return c, nil
}

func (c *DeltaClient) run() { receive(c.state, c.stream.Recv, c.handle) }

func (c *DeltaClient) handle(resp *discoveryv3.DeltaDiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	changed := map[string]*anypb.Any{}
	for _, r := range resp.GetResources() {
		changed[r.GetName()] = r.GetResource()
	}
	var rejectErr error
	if c.reject != nil {
		rejectErr = c.reject(typ, changed)
	}
	got := Received{TypeURL: typ, Removed: resp.GetRemovedResources(), Bytes: proto.Size(resp), NACK: rejectErr != nil, At: time.Now()}
	for name := range changed {
		got.Names = append(got.Names, name)
	}
	defer c.observed(got)
	c.mu.Lock()
	c.responses[typ]++
	if rejectErr != nil {
		c.nacks[typ]++
		c.notifyLocked()
		c.mu.Unlock()
		return c.send(&discoveryv3.DeltaDiscoveryRequest{
			TypeUrl: typ, ResponseNonce: resp.GetNonce(),
			ErrorDetail: &status.Status{Code: 3, Message: rejectErr.Error()},
		})
	}
	m := c.resources[typ]
	if m == nil {
		m = map[string]*anypb.Any{}
		c.resources[typ] = m
	}
	for name, a := range changed {
		m[name] = a
	}
	for _, name := range resp.GetRemovedResources() {
		delete(m, name)
	}
	c.versions[typ] = resp.GetSystemVersionInfo()
	c.updateRefsLocked(typ)
	routes, secrets, endpoints := c.routes, c.secrets, c.endpoints
	c.notifyLocked()
	c.mu.Unlock()

	if err := c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
		return err
	}
	switch typ {
	case resourcev3.ListenerType:
		if err := c.follow(resourcev3.RouteType, routes); err != nil {
			return err
		}
		return c.follow(resourcev3.SecretType, secrets)
	case resourcev3.ClusterType:
		return c.follow(resourcev3.EndpointType, endpoints)
	}
	return nil
}

// follow subscribes to new names and unsubscribes from dropped ones.
func (c *DeltaClient) follow(typ string, names []string) error {
	old := c.subscribed[typ]
	if sameNames(old, names) {
		return nil
	}
	c.subscribed[typ] = names
	had := map[string]bool{}
	for _, n := range old {
		had[n] = true
	}
	want := map[string]bool{}
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
	for _, n := range names {
		want[n] = true
		if !had[n] {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		}
	}
	for _, n := range old {
		if !want[n] {
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
		}
	}
	c.mu.Lock()
	for _, n := range req.ResourceNamesUnsubscribe {
		delete(c.resources[typ], n)
	}
	c.mu.Unlock()
	return c.send(req)
}

func (c *DeltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) error {
	if err := c.stream.Send(req); err != nil {
		return fmt.Errorf("sending %s delta request: %w", req.GetTypeUrl(), err)
	}
	return nil
}
