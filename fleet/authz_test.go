package fleet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
	"github.com/mccgate/mcc/threat/storeurl"
)

// envoyListener is the address Envoy's listener would have: what Envoy
// reports as the destination of every request and connection.
const envoyListener = "127.0.0.1:10443"

// authz is `mcc authz` as the CLI runs it: envoyext over a store opened from
// the same setting Caddy has, served over real gRPC on loopback.
type authz struct {
	store *redisstore.Store
	check authv3.AuthorizationClient
	logs  accesslogv3.AccessLogServiceClient
	sink  string
	// port numbers the client connections Envoy would report.
	port atomic.Uint32
}

func startAuthz(t *testing.T, setFile, redisURL, sink string) *authz {
	t.Helper()
	cfg, err := fusion.LoadFile(setFile)
	if err != nil {
		t.Fatalf("loading the fusion set file: %v", err)
	}
	st, err := storeurl.Open(context.Background(), redisURL, zap.NewNop())
	if err != nil {
		t.Fatalf("opening the store: %v", err)
	}
	rs, ok := st.(*redisstore.Store)
	if !ok {
		t.Fatalf("storeurl.Open(%s) = %T, want *redisstore.Store", redisURL, st)
	}
	fileSink, err := threat.NewFileSink(sink, 0, 0)
	if err != nil {
		t.Fatalf("opening the event sink: %v", err)
	}
	pipeline := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{fileSink}})
	svc, err := envoyext.New(envoyext.Options{
		Config:    cfg,
		Store:     st,
		Pipeline:  pipeline,
		Node:      "envoy-1",
		SNIRoutes: map[string]string{siteHost: setID},
	})
	if err != nil {
		t.Fatalf("starting the authz service: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, envoyext.ServeOptions{GRPC: lis}) }()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("authz Serve: %v", err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), timeout)
		defer ccancel()
		if err := pipeline.Close(cctx); err != nil {
			t.Errorf("closing the event pipeline: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	return &authz{
		store: rs,
		check: authv3.NewAuthorizationClient(cc),
		logs:  accesslogv3.NewAccessLogServiceClient(cc),
		sink:  sink,
	}
}

// sourceAddr is a downstream address of c: a new port per connection, as
// Envoy would report it.
func (a *authz) sourceAddr(c client) string {
	return net.JoinHostPort(c.ip, fmt.Sprint(20000+a.port.Add(1)%40000))
}

// handshakeFailures streams n failed handshakes of c on the listener-level
// access log, as Envoy reports a client that presents no certificate, and
// returns once the service has read (and scored) them all.
func (a *authz) handshakeFailures(ctx context.Context, c client, n int) error {
	stream, err := a.logs.StreamAccessLogs(ctx)
	if err != nil {
		return fmt.Errorf("opening the access-log stream: %w", err)
	}
	entries := make([]*accesslogdatav3.TCPAccessLogEntry, n)
	for i := range entries {
		entries[i] = envoytest.TCPEntry(envoytest.Connection{
			RemoteAddr:    a.sourceAddr(c),
			LocalAddr:     envoyListener,
			SNI:           siteHost,
			FailureReason: envoytest.HandshakeFailure,
		})
	}
	if err := stream.Send(envoytest.TCPLogs("envoy-1", envoyext.HandshakeLogName, entries...)); err != nil {
		return fmt.Errorf("sending access logs: %w", err)
	}
	// The service answers after it has handled every entry of the stream.
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("closing the access-log stream: %w", err)
	}
	return nil
}

// envoyGateway is Envoy's side as a client sees it: every request is the
// CheckRequest Envoy's ext_authz filter sends for it, and Envoy answers with
// the denied response or passes the request on.
type envoyGateway struct {
	authz *authz
	ids   atomic.Uint64
}

func (g *envoyGateway) name() string { return threat.GatewayEnvoy }

func (g *envoyGateway) request(ctx context.Context, c client, tc fusiontest.Case) (verdict, error) {
	headers := map[string]string{"accept": "application/json"}
	if c.device != "" {
		headers[fusiontest.HeaderDeviceID] = c.device
	}
	resp, err := g.authz.check.Check(ctx, envoytest.CheckRequest(envoytest.Check{
		FusionSet:  setID,
		Chain:      tc.Chain,
		SourceAddr: g.authz.sourceAddr(c),
		DestAddr:   envoyListener,
		SNI:        siteHost,
		Host:       siteHost,
		Method:     http.MethodGet,
		Path:       sitePath,
		RequestID:  fmt.Sprintf("fleet-%d-%d", time.Now().UnixNano(), g.ids.Add(1)),
		Headers:    headers,
	}))
	if err != nil {
		return verdict{}, fmt.Errorf("Check: %w", err)
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		if resp.GetDeniedResponse() != nil {
			return verdict{}, fmt.Errorf("Check: status OK with a denied response: %v", resp)
		}
		return verdict{Allowed: true}, nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return verdict{}, fmt.Errorf("Check: status %v without a denied response", resp.GetStatus())
	}
	v, err := parseBlockPage(int(d.GetStatus().GetCode()), []byte(d.GetBody()))
	if err != nil {
		return verdict{}, fmt.Errorf("Check: %w", err)
	}
	if got := resp.GetStatus().GetMessage(); got != string(v.Reason) {
		return verdict{}, fmt.Errorf("Check: deny status says %q, block page says %q", got, v.Reason)
	}
	return v, nil
}

func (g *envoyGateway) events(t *testing.T) []*threat.Event { return readSink(t, g.authz.sink) }
