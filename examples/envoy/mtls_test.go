package envoy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// envoyIdentity is the URI SAN of the README's envoy.pem.
const envoyIdentity = "spiffe://mcc/envoy/mcc-edge"

type clusterTLS struct {
	cert, key, ca, san, sni string
	h2                      bool
}

// xdsClusterTLS reads the xds_cluster's UpstreamTlsContext of a bootstrap.
func xdsClusterTLS(t *testing.T, b *bootstrapv3.Bootstrap) clusterTLS {
	t.Helper()
	ts := b.GetStaticResources().GetClusters()[0].GetTransportSocket()
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Fatalf("xds_cluster has no TLS transport socket: %v", ts)
	}
	utc := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(utc); err != nil {
		t.Fatal(err)
	}
	ctc := utc.GetCommonTlsContext()
	out := clusterTLS{sni: utc.GetSni()}
	if c := ctc.GetTlsCertificates(); len(c) == 1 {
		out.cert, out.key = c[0].GetCertificateChain().GetFilename(), c[0].GetPrivateKey().GetFilename()
	}
	vc := ctc.GetValidationContext()
	out.ca = vc.GetTrustedCa().GetFilename()
	if sans := vc.GetMatchTypedSubjectAltNames(); len(sans) == 1 && sans[0].GetSanType() == tlsv3.SubjectAltNameMatcher_DNS {
		out.san = sans[0].GetMatcher().GetExact()
	}
	out.h2 = len(ctc.GetAlpnProtocols()) == 1 && ctc.GetAlpnProtocols()[0] == "h2"
	return out
}

func findResource[T proto.Message](t *testing.T, res translate.Resources, typ resourcev3.Type, name string) T {
	t.Helper()
	for _, r := range res[typ] {
		if cachev3.GetResourceName(r) == name {
			return r.(T)
		}
	}
	t.Fatalf("no %s named %q", typ, name)
	var zero T
	return zero
}

// readmeLine returns the README line that starts with prefix, without its
// trailing comment.
func readmeLine(t *testing.T, prefix string) []string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, prefix) {
			line, _, _ = strings.Cut(line, "#")
			return strings.Fields(line)
		}
	}
	t.Fatalf("README.md has no line starting %q", prefix)
	return nil
}

// TestExampleOverMTLS runs the example with the hardened defaults: the
// control certificates made as the README's step 2 makes them (the code
// behind `mcc ca init` and `mcc cert create`), `mcc xds` with the README's
// TLS flags, and an ADS client that presents what the bootstrap presents.
func TestExampleOverMTLS(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("fusion-sets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := xdstest.WriteFile(t, dir, "fusion-sets.yaml", data)
	for _, set := range []string{"bank-prod", "bank-beta"} {
		if _, err := pki.InitCA(filepath.Join(dir, "ca", set), pki.CAOptions{Name: set}); err != nil {
			t.Fatal(err)
		}
	}
	controlCA := filepath.Join(dir, "control-ca")
	if _, err := pki.InitCA(controlCA, pki.CAOptions{Name: "Example control CA"}); err != nil {
		t.Fatal(err)
	}
	issue := func(req pki.ControlRequest, cert, key string) {
		t.Helper()
		cc, err := pki.IssueControlCert(controlCA, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := cc.WriteFiles(filepath.Join(dir, cert), filepath.Join(dir, key), false); err != nil {
			t.Fatal(err)
		}
	}
	// As in the README: mcc cert create ... --server / --client.
	issue(pki.ControlRequest{Name: "mcc-xds", DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.ControlServer}, "xds.pem", "xds-key.pem")
	issue(pki.ControlRequest{Name: "envoy-edge", URIs: []string{envoyIdentity}, Usage: pki.ControlClient}, "envoy.pem", "envoy-key.pem")
	issue(pki.ControlRequest{Name: "envoy-other", URIs: []string{"spiffe://mcc/envoy/other"}, Usage: pki.ControlClient}, "other.pem", "other-key.pem")
	if !strings.Contains(readmeString(t), "--uri "+envoyIdentity+" --client --out envoy.pem --key-out envoy-key.pem") {
		t.Error("the README does not make envoy.pem with the identity the node group lists")
	}

	// mcc xds as the README starts it.
	args := readmeLine(t, "mcc xds --config")
	var flags secure.ServerFlags
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	fs.String("config", "", "")
	flags.Register(fs)
	if err := fs.Parse(args[2:]); err != nil {
		t.Fatalf("README's mcc xds line: %v", err)
	}
	if flags.CertFile == "" || flags.ClientCAFile == "" {
		t.Fatalf("the README starts mcc xds without mTLS: %v", args)
	}
	for _, p := range []*string{&flags.CertFile, &flags.KeyFile, &flags.ClientCAFile} {
		*p = filepath.Join(dir, *p)
	}
	creds, err := flags.GRPCCredentials()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := xds.NewServer(ctx, xds.Options{ConfigPath: config, Logger: zaptest.NewLogger(t), Creds: creds, ClientCertificates: true})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis, nil) }()
	defer func() {
		cancel()
		<-served
	}()

	// The client presents what the bootstrap presents, and checks the
	// server as the bootstrap does.
	b := loadBootstrap(t, "envoy-bootstrap.yaml")
	bt := xdsClusterTLS(t, b)
	dial := func(cert, key string) *grpc.ClientConn {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, cert), filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		caPEM, err := os.ReadFile(filepath.Join(dir, bt.ca))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: bt.sni, NextProtos: []string{"h2"},
		})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	waitCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	c, err := xdstest.StartSotW(waitCtx, dial(bt.cert, bt.key), b.GetNode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	view, err := c.Wait(waitCtx, func(v xdstest.View) bool { return len(v.Resources[resourcev3.SecretType]) == 3 })
	if err != nil {
		t.Fatalf("the example's Envoy over mTLS: %v", err)
	}
	if got := view.Names(resourcev3.ListenerType); len(got) != 1 || got[0] != translate.ListenerName("edge") {
		t.Errorf("listeners = %v", got)
	}
	// No private key reaches Envoy over the wire (delivery: file).
	for name, a := range view.Resources[resourcev3.SecretType] {
		if strings.Contains(string(a.GetValue()), "PRIVATE KEY") {
			t.Errorf("secret %s carries a private key", name)
		}
	}

	// Another certificate of the same control CA is not a peer of mcc-edge.
	stream, err := grpcADS(waitCtx, dial("other.pem", "other-key.pem"), b.GetNode())
	if status.Code(err) != codes.PermissionDenied || stream {
		t.Errorf("a control certificate that is not a peer: got a response=%v, err=%v; want PermissionDenied", stream, err)
	}
}

func readmeString(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// grpcADS asks for listeners as node and reports whether any response came
// before the stream ended.
func grpcADS(ctx context.Context, cc *grpc.ClientConn, node *corev3.Node) (bool, error) {
	c, err := xdstest.StartSotW(ctx, cc, node, nil)
	if err != nil {
		return false, err
	}
	defer c.Close()
	view, err := c.Wait(ctx, func(xdstest.View) bool { return false })
	if err == io.EOF {
		err = nil
	}
	return len(view.Responses) > 0, err
}
