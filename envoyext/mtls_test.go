package envoyext

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/internal/secure"
)

// Envoy identities of the tests, as `mcc cert create --uri` writes them.
const (
	envoyID       = "spiffe://mcc/envoy/mcc-edge"
	envoyALSID    = "spiffe://mcc/envoy/mcc-edge-als"
	strangerID    = "spiffe://mcc/envoy/somebody-else"
	victimIP      = "203.0.113.50"
	fakeHandshake = 5
)

// served is one Service behind real listeners with the given options.
type served struct {
	svc      *Service
	grpcAddr string
	alsAddr  string
	adminURL string
}

// must is for test set-up calls that cannot fail unless the machine is
// broken; the panic fails the test with the error and a stack.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// serve starts svc on loopback listeners (a separate access-log listener
// when separateALS) with o's credentials and allow-lists.
func serve(t *testing.T, svc *Service, o ServeOptions, separateALS bool) *served {
	t.Helper()
	sv := &served{svc: svc}
	o.GRPC = must(net.Listen("tcp", "127.0.0.1:0"))
	sv.grpcAddr = o.GRPC.Addr().String()
	sv.alsAddr = sv.grpcAddr
	if separateALS {
		o.AccessLog = must(net.Listen("tcp", "127.0.0.1:0"))
		sv.alsAddr = o.AccessLog.Addr().String()
	}
	o.Admin = must(net.Listen("tcp", "127.0.0.1:0"))
	sv.adminURL = "http://" + o.Admin.Addr().String()
	if o.AdminToken == "" {
		o.AdminToken = testMetricsToken
	}
	o.ShutdownGrace = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sv
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc := must(grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds)))
	t.Cleanup(func() { cc.Close() })
	return cc
}

// fakeHandshakeFailures streams n handshake failures blaming ip, as a forged
// access log would, and returns the stream's final error.
func fakeHandshakeFailures(cc *grpc.ClientConn, ip string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := accesslogv3.NewAccessLogServiceClient(cc).StreamAccessLogs(ctx)
	if err != nil {
		return err
	}
	for i := range n {
		node, logName := "", ""
		if i == 0 {
			node, logName = "envoy-1", HandshakeLogName
		}
		msg := envoytest.TCPLogs(node, logName, envoytest.TCPEntry(envoytest.Connection{
			RemoteAddr: fmt.Sprintf("%s:%d", ip, 40000+i), LocalAddr: "192.0.2.1:443",
			SNI: "api.bank.example", FailureReason: envoytest.HandshakeFailure,
		}))
		if err := stream.Send(msg); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream; CloseAndRecv says why
			}
			return err
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func checkRPC(cc *grpc.ClientConn, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return authv3.NewAuthorizationClient(cc).Check(ctx, req)
}

func metricsOf(t *testing.T, adminURL string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", adminURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testMetricsToken)
	resp := must(http.DefaultClient.Do(req))
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The attack of issue 9: anyone who could reach mcc authz streamed five
// fake handshake failures for an address and banned it (on every gateway
// sharing the store). With mTLS, a caller without Envoy's client
// certificate, with one from another CA, or with an identity that is not
// allowed reaches neither the access-log service nor Check, so the fake
// entries ban nobody. Envoy's own identity still gets through (and its
// reports still ban, which shows the attack would have worked).
func TestMTLSRefusesCallersWithoutEnvoyIdentity(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	ctl := must(envoytest.NewControlPKI(t.TempDir(), "control"))
	foreign := must(envoytest.NewControlPKI(t.TempDir(), "foreign"))
	srvCert, srvKey, err := ctl.Server("mcc-authz")
	if err != nil {
		t.Fatal(err)
	}
	flags := secure.ServerFlags{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ctl.CAFile}
	creds := must(flags.GRPCCredentials())

	envoyCert, envoyKey, err := ctl.Client("envoy", envoyID)
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, strangerKey, err := ctl.Client("stranger", strangerID)
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, foreignKey, err := foreign.Client("foreign-envoy", envoyID)
	if err != nil {
		t.Fatal(err)
	}

	svc := must(New(Options{Config: p.loadConfig(t, failSafeYAML(p.caFile())), Node: "test-node",
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))}))
	sv := serve(t, svc, ServeOptions{Creds: creds, CheckPeers: []string{envoyID}, AccessLogPeers: []string{envoyID}}, false)

	envoy := dial(t, sv.grpcAddr, must(ctl.ClientCredentials(envoyCert, envoyKey)))
	victimAllowed := func(when string) {
		t.Helper()
		resp, err := checkRPC(envoy, goodCheck(p, victimIP, "victim-"+when))
		if err != nil {
			t.Fatalf("%s: Envoy's own Check failed: %v", when, err)
		}
		if statusCode(resp) != codes.OK {
			t.Fatalf("%s: the victim was banned by forged access-log entries: %v", when, resp.GetStatus())
		}
	}
	victimAllowed("before")

	attackers := []struct {
		name  string
		creds credentials.TransportCredentials
		want  codes.Code
	}{
		{"plaintext", nil, codes.Unavailable},
		{"TLS without a client certificate", must(ctl.ClientCredentials("", "")), codes.Unavailable},
		{"client certificate from another CA", must(ctl.ClientCredentials(foreignCert, foreignKey)), codes.Unavailable},
		{"identity not allowed", must(ctl.ClientCredentials(strangerCert, strangerKey)), codes.PermissionDenied},
	}
	for _, a := range attackers {
		cc := dial(t, sv.grpcAddr, a.creds)
		err := fakeHandshakeFailures(cc, victimIP, fakeHandshake)
		if status.Code(err) != a.want {
			t.Errorf("%s: access-log stream ended with %v, want %v", a.name, err, a.want)
		}
		_, err = checkRPC(cc, goodCheck(p, victimIP, "attacker"))
		if status.Code(err) != a.want {
			t.Errorf("%s: Check got %v, want %v", a.name, err, a.want)
		}
		victimAllowed("after " + a.name)
	}
	m := metricsOf(t, sv.adminURL)
	for _, series := range []string{`mcc_authz_peer_refused_total{service="access_log"}`, `mcc_authz_peer_refused_total{service="check"}`} {
		if !hasMetric(m, series, "1") {
			t.Errorf("metrics lack %s 1", series)
		}
	}
	if hasMetric(m, `mcc_authz_handshake_failures_total{fusion_set="bank"}`, "5") {
		t.Errorf("a refused stream's entries were scored")
	}

	// Envoy's own identity: its reports are believed, and ban.
	if err := fakeHandshakeFailures(envoy, victimIP, fakeHandshake); err != nil {
		t.Fatalf("Envoy's access-log stream: %v", err)
	}
	resp, err := checkRPC(envoy, goodCheck(p, victimIP, "victim-after-envoy"))
	if err != nil || statusCode(resp) != codes.PermissionDenied {
		t.Fatalf("handshake failures reported by Envoy itself must still score: %v %v", resp.GetStatus(), err)
	}
}

// With --access-log-listen the access-log service is served only there, and
// only to its own allowed identity; Check only on --listen.
func TestAccessLogListensApart(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	ctl := must(envoytest.NewControlPKI(t.TempDir(), "control"))
	srvCert, srvKey, err := ctl.Server("mcc-authz")
	if err != nil {
		t.Fatal(err)
	}
	flags := secure.ServerFlags{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ctl.CAFile}
	checkCert, checkKey, err := ctl.Client("envoy", envoyID)
	if err != nil {
		t.Fatal(err)
	}
	alsCert, alsKey, err := ctl.Client("envoy-als", envoyALSID)
	if err != nil {
		t.Fatal(err)
	}
	svc := must(New(Options{Config: p.loadConfig(t, failSafeYAML(p.caFile())), Node: "test-node",
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))}))
	sv := serve(t, svc, ServeOptions{Creds: must(flags.GRPCCredentials()),
		CheckPeers: []string{envoyID}, AccessLogPeers: []string{envoyALSID}}, true)

	asCheck := must(ctl.ClientCredentials(checkCert, checkKey))
	asALS := must(ctl.ClientCredentials(alsCert, alsKey))

	// The access-log service is not on the Check listener, and Check is not
	// on the access-log listener.
	if err := fakeHandshakeFailures(dial(t, sv.grpcAddr, asALS), victimIP, 1); status.Code(err) != codes.Unimplemented {
		t.Errorf("access log on the Check listener: %v, want Unimplemented", err)
	}
	if _, err := checkRPC(dial(t, sv.alsAddr, asCheck), goodCheck(p, victimIP, "x")); status.Code(err) != codes.Unimplemented {
		t.Errorf("Check on the access-log listener: %v, want Unimplemented", err)
	}
	// Check's identity may not report handshake failures, and the
	// access-log identity may not call Check.
	if err := fakeHandshakeFailures(dial(t, sv.alsAddr, asCheck), victimIP, fakeHandshake); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Check's identity on the access-log listener: %v, want PermissionDenied", err)
	}
	if _, err := checkRPC(dial(t, sv.grpcAddr, asALS), goodCheck(p, victimIP, "x")); status.Code(err) != codes.PermissionDenied {
		t.Errorf("access-log identity calling Check: %v, want PermissionDenied", err)
	}
	envoy := dial(t, sv.grpcAddr, asCheck)
	if resp, err := checkRPC(envoy, goodCheck(p, victimIP, "still-ok")); err != nil || statusCode(resp) != codes.OK {
		t.Fatalf("victim banned by a refused stream: %v %v", resp.GetStatus(), err)
	}
	// The access-log identity on its listener is believed.
	if err := fakeHandshakeFailures(dial(t, sv.alsAddr, asALS), victimIP, fakeHandshake); err != nil {
		t.Fatalf("the access-log identity's stream: %v", err)
	}
	if resp, err := checkRPC(envoy, goodCheck(p, victimIP, "banned")); err != nil || statusCode(resp) != codes.PermissionDenied {
		t.Fatalf("failures from the access-log listener must score: %v %v", resp.GetStatus(), err)
	}
}

// An allow-list without TLS cannot be met: every caller is refused rather
// than trusted.
func TestPeerListWithoutTLSRefusesEveryone(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	svc := must(New(Options{Config: p.loadConfig(t, failSafeYAML(p.caFile())), Logger: zap.NewNop()}))
	sv := serve(t, svc, ServeOptions{CheckPeers: []string{envoyID}, AccessLogPeers: []string{envoyID}}, false)
	cc := dial(t, sv.grpcAddr, nil)
	if _, err := checkRPC(cc, goodCheck(p, victimIP, "x")); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Check: %v, want PermissionDenied", err)
	}
	if err := fakeHandshakeFailures(cc, victimIP, 1); status.Code(err) != codes.PermissionDenied {
		t.Errorf("access log: %v, want PermissionDenied", err)
	}
}
