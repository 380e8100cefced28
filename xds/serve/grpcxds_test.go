package serve_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"

	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// TestGRPCGoXDSClient runs gRPC-Go's own xDS client, an independent
// implementation, against the control plane: it resolves "xds:///greeter"
// through LDS (api_listener), RDS, CDS and EDS, makes a real RPC through the
// resolved cluster, then rejects a snapshot it cannot use (a STATIC cluster)
// and keeps working after the rollback.
func TestGRPCGoXDSClient(t *testing.T) {
	h := start(t, "")

	// The backend the xDS-resolved cluster points at.
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := grpc.NewServer()
	healthpb.RegisterHealthServer(hs, health.NewServer()) // reports SERVING
	go func() { _ = hs.Serve(backend) }()
	defer hs.Stop()
	port := uint32(backend.Addr().(*net.TCPAddr).Port)

	res, err := xdstest.ProxylessGRPC("greeter", []gateway.Endpoint{{IP: "127.0.0.1", Port: port}})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, "grpc-1", map[string]translate.Resources{"grpc-clients": res})
	v1 := version(t, h, "grpc-clients")

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": "passthrough:///%s", "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpc-client-1", "cluster": "grpc-clients"}
	}`, h.addr)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	cc, err := grpc.NewClient("xds:///greeter", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	check := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("RPC through the xDS-resolved cluster: %v", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health = %v", resp.GetStatus())
		}
	}
	check()

	want := map[string]string{}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		want[typ] = typeVersion(t, h, "grpc-clients", typ)
	}
	s := waitStatus(t, h, func(s serve.Status) bool {
		if len(s.Nodes) != 1 {
			return false
		}
		a := s.Nodes[0].Acked
		return a["listener"] == want[resourcev3.ListenerType] && a["route"] == want[resourcev3.RouteType] &&
			a["cluster"] == want[resourcev3.ClusterType] && a["endpoint"] == want[resourcev3.EndpointType] &&
			groupStatus(s, "grpc-clients").LastACKedVersion == v1
	})
	if s.Nodes[0].ID != "grpc-client-1" || s.Nodes[0].Cluster != "grpc-clients" {
		t.Errorf("node = %+v", s.Nodes[0])
	}

	// gRPC does not do STATIC clusters: it NACKs, the group rolls back.
	bad := translate.Resources{
		resourcev3.ListenerType: res[resourcev3.ListenerType],
		resourcev3.RouteType:    res[resourcev3.RouteType],
		resourcev3.ClusterType: {&clusterv3.Cluster{
			Name:                 "mcc-upstream-greeter",
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       res[resourcev3.ClusterType][0].(*clusterv3.Cluster).ConnectTimeout,
		}},
	}
	v2, byType, err := serve.Versions(bad) // computed: the rollback may come before a read
	if err != nil {
		t.Fatal(err)
	}
	cv2 := byType[resourcev3.ClusterType]
	h.publish(t, "grpc-2", map[string]translate.Resources{"grpc-clients": bad})
	s = waitStatus(t, h, func(s serve.Status) bool {
		g := groupStatus(s, "grpc-clients")
		return g.RolledBackFrom == v2 && g.Version == v1
	})
	nack := s.Nodes[0].LastNACK
	if nack == nil || nack.Type != "cluster" || nack.Version != cv2 || !strings.Contains(nack.Message, "unsupported cluster type") {
		t.Errorf("last NACK = %+v", nack)
	}
	check()
	time.Sleep(500 * time.Millisecond)
	_, metrics := get(t, h.admin.URL+"/metrics", "")
	t.Logf("after the gRPC client's NACK: %s", grepLine(metrics, `mcc_xds_nacks_total{type="cluster"}`))
	if !strings.Contains(metrics, `mcc_xds_nacks_total{type="cluster"} 1`) && !strings.Contains(metrics, `mcc_xds_nacks_total{type="cluster"} 2`) {
		t.Errorf("NACKs not bounded:\n%s", grepLine(metrics, "mcc_xds_nacks_total"))
	}
}

func grepLine(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
