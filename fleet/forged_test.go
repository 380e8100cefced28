package fleet

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
)

const forgedEnvoyID = "spiffe://mcc/envoy/mcc-edge"

// startMTLSAuthz runs one `mcc authz` gateway as the README sets it up:
// mTLS with Envoy's client certificate and an allow-list, on the shared
// store.
func startMTLSAuthz(t *testing.T, setFile, redisURL string, ctl *envoytest.ControlPKI, name string) string {
	t.Helper()
	cfg, err := fusion.LoadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storeurl.Open(context.Background(), redisURL, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := envoyext.New(envoyext.Options{Config: cfg, Store: st, Node: name, SNIRoutes: map[string]string{siteHost: setID}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ctl.Server(name)
	if err != nil {
		t.Fatal(err)
	}
	flags := secure.ServerFlags{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ctl.CAFile}
	creds, err := flags.GRPCCredentials()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- svc.Serve(ctx, envoyext.ServeOptions{GRPC: lis, Creds: creds,
			CheckPeers: []string{forgedEnvoyID}, AccessLogPeers: []string{forgedEnvoyID}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("authz Serve: %v", err)
		}
		st.Close()
	})
	return lis.Addr().String()
}

func dialAs(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// The attack of issue 9 on a fleet: with a shared Redis, five forged
// access-log entries sent to one `mcc authz` banned an address on every
// gateway. With mTLS, a caller without Envoy's identity is refused, and the
// address stays allowed on both gateways; Envoy's own reports still ban
// across them, so the store is really shared.
func TestForgedAccessLogBansNobodyOnAnyGateway(t *testing.T) {
	redis := redistest.New(t)
	corpus := fusiontest.NewCorpus(t, setID, appID)
	setFile := corpus.WriteSetFile(t, "forged.yaml", func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDefense), true
		sc.Scores = map[string]int{string(threat.ReasonHandshakeFailed): eventScore}
		sc.FailSafe = &fusion.FailSafe{Threshold: threshold, Window: fusion.Duration(10 * time.Minute), Duration: fusion.Duration(10 * time.Minute)}
	})
	valid := corpus.Case(t, "valid")
	ctl, err := envoytest.NewControlPKI(t.TempDir(), "control")
	if err != nil {
		t.Fatal(err)
	}
	gw1 := startMTLSAuthz(t, setFile, redis.URL(), ctl, "authz-1")
	gw2 := startMTLSAuthz(t, setFile, redis.URL(), ctl, "authz-2")

	envoyCert, envoyKey, err := ctl.Client("envoy", forgedEnvoyID)
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, strangerKey, err := ctl.Client("stranger", "spiffe://mcc/not-envoy")
	if err != nil {
		t.Fatal(err)
	}
	asEnvoy, err := ctl.ClientCredentials(envoyCert, envoyKey)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := ctl.ClientCredentials("", "")
	if err != nil {
		t.Fatal(err)
	}
	asStranger, err := ctl.ClientCredentials(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}

	const victim = "198.51.100.77"
	forge := func(cc *grpc.ClientConn, n int) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		stream, err := accesslogv3.NewAccessLogServiceClient(cc).StreamAccessLogs(ctx)
		if err != nil {
			return err
		}
		for i := range n {
			msg := envoytest.TCPLogs("envoy-1", envoyext.HandshakeLogName, envoytest.TCPEntry(envoytest.Connection{
				RemoteAddr: fmt.Sprintf("%s:%d", victim, 30000+i), LocalAddr: envoyListener, SNI: siteHost,
				FailureReason: envoytest.HandshakeFailure,
			}))
			if err := stream.Send(msg); err != nil {
				break // refused; CloseAndRecv says why
			}
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	allowed := func(addr string) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		resp, err := authv3.NewAuthorizationClient(dialAs(t, addr, asEnvoy)).Check(ctx, envoytest.CheckRequest(envoytest.Check{
			FusionSet: setID, Chain: valid.Chain, SourceAddr: victim + ":40000", DestAddr: envoyListener,
			SNI: siteHost, Host: siteHost, Method: "GET", Path: sitePath,
		}))
		if err != nil {
			t.Fatalf("Envoy's Check at %s: %v", addr, err)
		}
		return codes.Code(resp.GetStatus().GetCode()) == codes.OK
	}

	for name, creds := range map[string]credentials.TransportCredentials{"no client certificate": noCert, "identity not allowed": asStranger} {
		if err := forge(dialAs(t, gw1, creds), 5); status.Code(err) == codes.OK {
			t.Fatalf("%s: forged access log accepted", name)
		}
	}
	if !allowed(gw1) || !allowed(gw2) {
		t.Fatalf("forged access-log entries banned the victim (gateway 1 allowed: %v, gateway 2 allowed: %v)", allowed(gw1), allowed(gw2))
	}
	// Envoy's own reports at gateway 1 ban at gateway 2: the store is shared.
	if err := forge(dialAs(t, gw1, asEnvoy), threshold/eventScore); err != nil {
		t.Fatalf("Envoy's access log: %v", err)
	}
	if allowed(gw2) {
		t.Fatalf("Envoy's reports at gateway 1 did not ban at gateway 2")
	}
}
