package envoyext

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// harness is one running Service on loopback listeners, with real gRPC
// clients and a file sink whose events the test reads back.
type harness struct {
	t          *testing.T
	svc        *Service
	authz      authv3.AuthorizationClient
	als        accesslogv3.AccessLogServiceClient
	adminURL   string
	eventsFile string
	pipeline   *threat.Pipeline
	closed     bool
}

const testMetricsToken = "test-metrics-token"

func startHarness(t *testing.T, cfg *fusion.Config, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, eventsFile: filepath.Join(t.TempDir(), "events.jsonl")}
	sink, err := threat.NewFileSink(h.eventsFile, 0, 0)
	if err != nil {
		t.Fatalf("file sink: %v", err)
	}
	h.pipeline = threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{sink}})
	opts := Options{Config: cfg, Pipeline: h.pipeline, Node: "test-node", Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	if mod != nil {
		mod(&opts)
	}
	h.svc, err = New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.adminURL = "http://" + adminLis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- h.svc.Serve(ctx, ServeOptions{GRPC: grpcLis, Admin: adminLis, AdminToken: testMetricsToken, ShutdownGrace: 2 * time.Second})
	}()
	cc, err := grpc.NewClient("passthrough:///"+grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.authz = authv3.NewAuthorizationClient(cc)
	h.als = accesslogv3.NewAccessLogServiceClient(cc)
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.closePipeline()
	})
	return h
}

func (h *harness) check(req *authv3.CheckRequest) *authv3.CheckResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, req)
	if err != nil {
		h.t.Fatalf("Check RPC failed (a decision must never be an RPC error): %v", err)
	}
	return resp
}

func (h *harness) closePipeline() {
	if h.closed {
		return
	}
	h.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.pipeline.Close(ctx); err != nil {
		h.t.Errorf("closing pipeline: %v", err)
	}
}

// events drains the pipeline and returns every event the file sink wrote,
// each validated against the event schema.
func (h *harness) events() []*threat.Event {
	h.t.Helper()
	h.closePipeline()
	f, err := os.Open(h.eventsFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		h.t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		h.t.Errorf("events file mode %v, want 0600", perm)
	}
	var out []*threat.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if err := schematest.ValidateEventJSON(line); err != nil {
			h.t.Errorf("event fails the schema: %v\n%s", err, line)
			continue
		}
		e := new(threat.Event)
		if err := e.UnmarshalJSON(line); err != nil {
			h.t.Fatalf("event does not decode: %v", err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// metrics scrapes /metrics with the bearer token.
func (h *harness) metrics() string {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.adminURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testMetricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		h.t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// hasMetric reports whether the exposition holds a sample line starting with
// name{labels} and ending with value.
func hasMetric(exposition, series, value string) bool {
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, series+" ") && strings.TrimPrefix(line, series+" ") == value {
			return true
		}
	}
	return false
}

// testPKI is a CA from package pki and a fusion set file around it.
type testPKI struct {
	dir  string
	ca   *pki.CA
	good *x509.Certificate
}

func newTestPKI(t *testing.T, setID, appID string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.InitCA(filepath.Join(dir, "ca"), pki.CAOptions{Name: "envoyext test CA"})
	if err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	iss, err := ca.Issue(pki.IssueRequest{FusionSet: setID, AppID: appID,
		Build: certid.BuildInfo{ID: "build-1", Date: time.Now().Add(-time.Hour), User: "ci", Host: "runner", SDK: "test"}})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return &testPKI{dir: dir, ca: ca, good: iss.Cert}
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, "ca", pki.CACertFile) }

// loadConfig writes a fusion set file into the PKI dir and loads it.
func (p *testPKI) loadConfig(t *testing.T, yaml string) *fusion.Config {
	t.Helper()
	path := filepath.Join(p.dir, "fusion.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		t.Fatalf("loading fusion set file: %v\n%s", err, yaml)
	}
	return cfg
}

// writeServerCert writes a self-signed server certificate and its key (0600)
// for a gateway listener.
func writeServerCert(t *testing.T, dir, certName, keyName string) {
	t.Helper()
	l := testpki.NewCA(t, "edge CA").Server(t, "api.bank.example")
	if err := os.WriteFile(filepath.Join(dir, certName), l.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, keyName), l.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}
