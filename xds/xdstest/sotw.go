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

// SotWClient is a state-of-the-world ADS client that behaves like Envoy:
// LDS and CDS as wildcards, then RDS, SDS and EDS by the names the accepted
// listeners and clusters reference; every response is ACKed, or NACKed when
// Reject says so (keeping the previously accepted version, as Envoy does).
type SotWClient struct {
	*state
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	reject RejectFunc
	// subscribed holds the names sent for each named type.
	subscribed map[string][]string
	nonces     map[string]string
}

// StartSotW opens an ADS stream on cc and subscribes. reject may be nil.
func StartSotW(ctx context.Context, cc grpc.ClientConnInterface, node *corev3.Node, reject RejectFunc) (*SotWClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening ADS stream: %w", err)
	}
	c := &SotWClient{
		state: newState(cancel), stream: stream, node: node, reject: reject,
		subscribed: map[string][]string{}, nonces: map[string]string{},
	}
	for i, typ := range wildcardTypes {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node // only the first request needs to carry it
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

func (c *SotWClient) run() { receive(c.state, c.stream.Recv, c.handle) }

func (c *SotWClient) handle(resp *discoveryv3.DiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	byName := map[string]*anypb.Any{}
	for _, a := range resp.GetResources() {
		name, err := resourceName(a)
		if err != nil {
			return err
		}
		byName[name] = a
	}
	c.nonces[typ] = resp.GetNonce()

	var rejectErr error
	if c.reject != nil {
		rejectErr = c.reject(typ, byName)
	}
	got := Received{TypeURL: typ, Bytes: proto.Size(resp), NACK: rejectErr != nil, At: time.Now()}
	for name := range byName {
		got.Names = append(got.Names, name)
	}
	defer c.observed(got)
	c.mu.Lock()
	c.responses[typ]++
	if rejectErr != nil {
		c.nacks[typ]++
		accepted := c.versions[typ]
		c.notifyLocked()
		c.mu.Unlock()
		return c.send(&discoveryv3.DiscoveryRequest{
			TypeUrl: typ, VersionInfo: accepted, ResponseNonce: resp.GetNonce(),
			ResourceNames: c.subscribed[typ],
			ErrorDetail:   &status.Status{Code: 3, Message: rejectErr.Error()},
		})
	}
	c.versions[typ] = resp.GetVersionInfo()
	// State of the world: every response holds the full set of the type.
	c.resources[typ] = byName
	c.updateRefsLocked(typ)
	routes, secrets, endpoints := c.routes, c.secrets, c.endpoints
	c.notifyLocked()
	c.mu.Unlock()

	if err := c.send(&discoveryv3.DiscoveryRequest{
		TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
		ResourceNames: c.subscribed[typ],
	}); err != nil {
		return err
	}
	// New names to follow, as Envoy does after accepting listeners or
	// clusters: a new request for that type with the full list of names.
	for _, sub := range []struct {
		typ   string
		names []string
	}{{resourcev3.RouteType, routes}, {resourcev3.SecretType, secrets}, {resourcev3.EndpointType, endpoints}} {
		if (typ == resourcev3.ListenerType && sub.typ != resourcev3.EndpointType) ||
			(typ == resourcev3.ClusterType && sub.typ == resourcev3.EndpointType) {
			if err := c.follow(sub.typ, sub.names); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *SotWClient) follow(typ string, names []string) error {
	if old, ok := c.subscribed[typ]; ok && sameNames(old, names) {
		return nil
	}
	if len(names) == 0 && c.subscribed[typ] == nil {
		return nil
	}
	c.subscribed[typ] = names
	c.mu.Lock()
	version := c.versions[typ]
	c.mu.Unlock()
	return c.send(&discoveryv3.DiscoveryRequest{
		TypeUrl: typ, VersionInfo: version, ResponseNonce: c.nonces[typ], ResourceNames: names,
	})
}

func (c *SotWClient) send(req *discoveryv3.DiscoveryRequest) error {
	if err := c.stream.Send(req); err != nil {
		return fmt.Errorf("sending %s request: %w", req.GetTypeUrl(), err)
	}
	return nil
}
