package xds_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/xdstest"
)

const testTimeout = 30 * time.Second

// setFile is a fusion set file with two apps and a gateway section.
const setFile = `fusion_sets:
  - id: app-a
    trusted_ca:
      file: ca/app-a/ca.pem
    app_id: com.example.a
    mode: defense
    threat_events: true
    revocation:
      crls: [ca/app-a/crl.pem]
  - id: app-b
    trusted_ca:
      file: ca/app-b/ca.pem
    app_id: com.example.b
    mode: detection
    threat_events: true
gateway:
  authz:
    address: 127.0.0.1:9001
  listeners:
    - name: edge
      port: 8443
      certificate:
        cert_file: server.pem
        key_file: server-key.pem
      routes:
        - host: a.example.com
          fusion_set: app-a
          upstream: api-a
        - host: b.example.com
          fusion_set: app-b
          upstream: api-b
  upstreams:
    - name: api-a
      endpoints: [127.0.0.1:8081]
    - name: api-b
      endpoints: [127.0.0.1:8082]
  node_groups:
    - cluster: edge
      listeners: [edge]
`

type env struct {
	dir, path string
	caA, caB  *xdstest.CA
	srv       *xds.Server
	addr      string
	adminURL  string
	stop      func()
	served    chan error
}

func writeFiles(t *testing.T, dir string) (caA, caB *xdstest.CA) {
	t.Helper()
	caA, caB = xdstest.NewCA(t, "app-a CA"), xdstest.NewCA(t, "app-b CA")
	server := xdstest.NewCA(t, "server CA").IssueServer(t, "a.example.com", "b.example.com")
	xdstest.WriteFile(t, dir, "ca/app-a/ca.pem", caA.CertPEM)
	xdstest.WriteFile(t, dir, "ca/app-a/crl.pem", caA.CRL(t))
	xdstest.WriteFile(t, dir, "ca/app-b/ca.pem", caB.CertPEM)
	xdstest.WriteFile(t, dir, "server.pem", server.CertPEM)
	xdstest.WriteFile(t, dir, "server-key.pem", server.KeyPEM)
	return caA, caB
}

// startServer runs mcc xds on loopback ports over a fresh set file, with
// a 20ms safety poll.
func startServer(t *testing.T) *env { t.Helper(); return startServerPolling(t, 20*time.Millisecond) }

// startServerPolling is startServer with the given safety poll.
func startServerPolling(t *testing.T, poll time.Duration) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	e.caA, e.caB = writeFiles(t, e.dir)
	e.path = xdstest.WriteFile(t, e.dir, "fusion-sets.yaml", []byte(setFile))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := xds.NewServer(ctx, xds.Options{
		ConfigPath:    e.path,
		WatchInterval: poll,
		Logger:        zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
		AdminToken:    "t0ken",
	})
	if err != nil {
		cancel()
		t.Fatalf("NewServer: %v", err)
	}
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.addr, e.adminURL = srv, xl.Addr().String(), "http://"+al.Addr().String()
	e.served = make(chan error, 1)
	go func() { e.served <- srv.Serve(ctx, xl, al) }()
	e.stop = cancel
	t.Cleanup(func() {
		cancel()
		select {
		case <-e.served:
		case <-time.After(testTimeout):
			t.Error("Serve did not return after cancel")
		}
	})
	return e
}

func (e *env) write(t *testing.T, name string, data []byte) {
	t.Helper()
	xdstest.WriteFile(t, e.dir, name, data)
}

// rename writes data to a temporary file and renames it over name, as an
// editor, a deployment tool or a Kubernetes volume update does.
func (e *env) rename(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := xdstest.WriteFile(t, e.dir, name+".tmp", data)
	if err := os.Rename(tmp, filepath.Join(e.dir, name)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) client(t *testing.T, delta bool) interface {
	Wait(context.Context, func(xdstest.View) bool) (xdstest.View, error)
	View() xdstest.View
} {
	t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	n := &corev3.Node{Id: fmt.Sprintf("envoy-%v", delta), Cluster: "edge"}
	if delta {
		c, err := xdstest.StartDelta(context.Background(), cc, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	c, err := xdstest.StartSotW(context.Background(), cc, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// validation returns the validation context a client accepted for a set.
func validation(v xdstest.View, set string) *tlsv3.CertificateValidationContext {
	a := v.Resources[resourcev3.SecretType]["mcc-validation-"+set]
	if a == nil {
		return nil
	}
	s := &tlsv3.Secret{}
	if a.UnmarshalTo(s) != nil {
		return nil
	}
	return s.GetValidationContext()
}

func hasSecret(set string, cond func(*tlsv3.CertificateValidationContext) bool) func(xdstest.View) bool {
	return func(v xdstest.View) bool {
		vc := validation(v, set)
		return vc != nil && cond(vc)
	}
}

// TestFileChangesReachClients: every kind of file change reaches state of
// the world and delta clients. The safety poll is far longer than the test
// may run: the changes are seen through file notifications.
func TestFileChangesReachClients(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := map[bool]string{false: "sotw", true: "delta"}[delta]
		t.Run(name, func(t *testing.T) {
			e := startServerPolling(t, time.Hour)
			c := e.client(t, delta)
			if _, err := c.Wait(ctxT(t), func(v xdstest.View) bool {
				return len(v.Resources[resourcev3.ListenerType]) == 1 && len(v.Resources[resourcev3.SecretType]) == 3 &&
					len(v.Resources[resourcev3.EndpointType]) == 3 && len(v.Resources[resourcev3.RouteType]) == 2
			}); err != nil {
				t.Fatalf("initial configuration: %v", err)
			}

			// The fusion set file: a new route and upstream.
			changed := time.Now()
			e.write(t, "fusion-sets.yaml", []byte(strings.Replace(setFile, "  upstreams:\n",
				"        - host: c.example.com\n          fusion_set: app-b\n          upstream: api-c\n  upstreams:\n    - name: api-c\n      endpoints: [127.0.0.1:8083]\n", 1)))
			if _, err := c.Wait(ctxT(t), func(v xdstest.View) bool {
				return v.Resources[resourcev3.EndpointType]["mcc-upstream-api-c"] != nil
			}); err != nil {
				t.Fatalf("route change: %v", err)
			}
			t.Logf("%s: fusion set file change reached the client in %v", name, time.Since(changed))

			// Renamed into place: a route of app-a moves to a new path.
			changed = time.Now()
			e.rename(t, "fusion-sets.yaml", []byte(strings.Replace(setFile, "          fusion_set: app-a\n",
				"          path_prefix: /v2\n          fusion_set: app-a\n", 1)))
			if _, err := c.Wait(ctxT(t), func(v xdstest.View) bool {
				a := v.Resources[resourcev3.RouteType]["mcc-routes-edge/app-a"]
				return a != nil && bytes.Contains(a.GetValue(), []byte("/v2"))
			}); err != nil {
				t.Fatalf("renamed file: %v", err)
			}
			t.Logf("%s: renamed fusion set file reached the client in %v", name, time.Since(changed))

			// A CA bundle: the new CA goes out in the set's SDS secret.
			newCA := xdstest.NewCA(t, "app-b CA 2")
			changed = time.Now()
			e.write(t, "ca/app-b/ca.pem", newCA.CertPEM)
			if _, err := c.Wait(ctxT(t), hasSecret("app-b", func(vc *tlsv3.CertificateValidationContext) bool {
				return bytes.Equal(vc.GetTrustedCa().GetInlineBytes(), newCA.CertPEM)
			})); err != nil {
				t.Fatalf("CA change: %v", err)
			}
			t.Logf("%s: CA bundle change reached the client in %v", name, time.Since(changed))

			// A CRL: a revoked certificate's CRL goes out too.
			revoked := e.caA.IssueClient(t, "app-a", "com.example.a")
			crl := e.caA.CRL(t, revoked)
			changed = time.Now()
			e.write(t, "ca/app-a/crl.pem", crl)
			if _, err := c.Wait(ctxT(t), hasSecret("app-a", func(vc *tlsv3.CertificateValidationContext) bool {
				return bytes.Equal(vc.GetCrl().GetInlineBytes(), crl) && vc.GetOnlyVerifyLeafCertCrl()
			})); err != nil {
				t.Fatalf("CRL change: %v", err)
			}
			t.Logf("%s: CRL change reached the client in %v", name, time.Since(changed))

			// The listener's server certificate.
			server := xdstest.NewCA(t, "server CA 2").IssueServer(t, "a.example.com")
			e.write(t, "server-key.pem", server.KeyPEM)
			e.write(t, "server.pem", server.CertPEM)
			if _, err := c.Wait(ctxT(t), func(v xdstest.View) bool {
				a := v.Resources[resourcev3.SecretType]["mcc-server-cert-edge"]
				s := &tlsv3.Secret{}
				return a != nil && a.UnmarshalTo(s) == nil && bytes.Equal(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), server.CertPEM)
			}); err != nil {
				t.Fatalf("server certificate change: %v", err)
			}
			if v := c.View(); v.TotalNACKs() != 0 {
				t.Errorf("NACKs: %v", v.NACKs)
			}
		})
	}
}

func TestBadFilesAreRefusedAndTheLastGoodKeepsServing(t *testing.T) {
	e := startServer(t)
	c := e.client(t, false)
	good, err := c.Wait(ctxT(t), func(v xdstest.View) bool { return len(v.Resources[resourcev3.SecretType]) == 3 })
	if err != nil {
		t.Fatal(err)
	}
	goodVersion := good.Versions[resourcev3.ListenerType]
	serving := e.srv.ControlPlane().Status().Config.Version

	caPEM, _ := os.ReadFile(filepath.Join(e.dir, "ca/app-b/ca.pem"))
	keyPEM, _ := os.ReadFile(filepath.Join(e.dir, "server-key.pem"))
	otherKey := xdstest.NewCA(t, "x").IssueServer(t, "x.example.com").KeyPEM
	replace := func(old, new string) func() {
		return func() {
			s := strings.Replace(setFile, old, new, 1)
			if s == setFile {
				t.Fatalf("test edit %q does not apply", old)
			}
			e.write(t, "fusion-sets.yaml", []byte(s))
		}
	}
	tests := []struct {
		name   string
		break_ func()
		fix    func()
		want   string
	}{
		{"YAML syntax", replace("  authz:\n", "  authz: [\n"), nil, "fusion-sets.yaml:"},
		{"unknown key in the gateway", replace("      port: 8443\n", "      port: 8443\n      tls: on\n"), nil,
			"fusion-sets.yaml:22: gateway.listeners[0].tls: unknown field"},
		{"unknown fusion set", replace("fusion_set: app-b", "fusion_set: app-z"), nil,
			`fusion-sets.yaml:30: gateway.listeners[0].routes[1].fusion_set: unknown fusion set "app-z"`},
		{"missing certificate file", replace("cert_file: server.pem", "cert_file: nowhere.pem"), nil,
			"gateway.listeners[0].certificate.cert_file: file not found: " + filepath.Join(e.dir, "nowhere.pem")},
		{"duplicate listener name", replace("  upstreams:\n", "    - name: edge\n      port: 9443\n      certificate:\n        cert_file: server.pem\n        key_file: server-key.pem\n      routes:\n        - host: z.example.com\n          fusion_set: app-a\n          upstream: api-a\n  upstreams:\n"), nil,
			`duplicate listener name "edge"`},
		{"bad port", replace("port: 8443", "port: 0"), nil, "gateway.listeners[0].port: must be a port number between 1 and 65535"},
		{"bad endpoint address", replace("[127.0.0.1:8081]", "[api.internal:8081]"), nil, "gateway.upstreams[0].endpoints[0]: must be IP:port with an IP address"},
		{"fusion set mistake", replace("mode: detection", "mode: audit"), nil, `fusion_sets[1].mode: unknown mode "audit"`},
		{"damaged CA file", func() { e.write(t, "ca/app-b/ca.pem", []byte("not a certificate")) },
			func() { e.write(t, "ca/app-b/ca.pem", caPEM) }, "trusted_ca"},
		{"key that does not match the certificate", func() { e.write(t, "server-key.pem", otherKey) },
			func() { e.write(t, "server-key.pem", keyPEM) }, "private key does not match public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.break_()
			s := waitStatus(t, e, func(s serve.Status) bool { return strings.Contains(s.Config.LastLoadError, tc.want) })
			if s.Config.Version != serving {
				t.Errorf("config version moved to %s while refused", s.Config.Version)
			}
			// The client still has the last good configuration.
			if v := c.View(); v.Versions[resourcev3.ListenerType] != goodVersion || len(v.Resources[resourcev3.SecretType]) != 3 {
				t.Errorf("client moved: %v", v.Versions)
			}
			if tc.fix != nil {
				tc.fix()
			}
			e.write(t, "fusion-sets.yaml", []byte(setFile))
			waitStatus(t, e, func(s serve.Status) bool { return s.Config.LastLoadError == "" })
		})
	}
	if v := c.View(); v.TotalNACKs() != 0 {
		t.Errorf("NACKs: %v", v.NACKs)
	}
}

func TestNewServerRefusesABadFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir)
	path := xdstest.WriteFile(t, dir, "fusion-sets.yaml", []byte(strings.Replace(setFile, "port: 8443", "port: 99999", 1)))
	_, err := xds.NewServer(context.Background(), xds.Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "fusion-sets.yaml:21: gateway.listeners[0].port") {
		t.Fatalf("err = %v", err)
	}
	path = xdstest.WriteFile(t, dir, "no-gateway.yaml", []byte(setFile[:strings.Index(setFile, "gateway:")]))
	_, err = xds.NewServer(context.Background(), xds.Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "gateway: missing") {
		t.Fatalf("err = %v", err)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	e := startServer(t)
	c := e.client(t, true)
	if _, err := c.Wait(ctxT(t), func(v xdstest.View) bool { return len(v.Resources[resourcev3.ListenerType]) == 1 }); err != nil {
		t.Fatal(err)
	}
	e.stop()
	select {
	case err := <-e.served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		e.served <- nil // for the cleanup
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
	}
}

func waitStatus(t *testing.T, e *env, cond func(serve.Status) bool) serve.Status {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		s := e.srv.ControlPlane().Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never reached the expected state: %+v", s.Config)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
