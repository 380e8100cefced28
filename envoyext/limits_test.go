package envoyext

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/threat"
)

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// The memory attack of issue 9: 100 Checks with a 3 MiB
// x-forwarded-client-cert raised mcc authz's RSS from 81 MB to 384 MB, held
// after GC, because the certificate cache kept every header as its key.
// Now a message over DefaultMaxRecvMsgSize is refused by gRPC, a header over
// DefaultMaxXFCCBytes is CERT_MALFORMED before anything is decoded or
// cached, and the cache holds nothing for either.
func TestOversizeXFCCIsNotCached(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	h := startHarness(t, p.loadConfig(t, modeYAML(p.caFile(), testModes[0])), nil)
	before := heapAfterGC()

	big := func(i, size int) map[string]string {
		// Distinct values, as the attack sent: identical ones would share
		// one cache entry even on the old code.
		pad := strings.Repeat("A", size)
		return map[string]string{HeaderXFCC: fmt.Sprintf(`Hash=%d;Cert="x";Chain="%s"`, i, pad)}
	}
	for i := range 100 {
		_, err := h.authz.Check(context.Background(), envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: p.good.Raw, SourceAddr: "198.51.100.9:1000",
			Host: "api.bank.example", Method: "GET", Path: "/", Headers: big(i, 3<<20),
		}))
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a 3 MiB CheckRequest: got %v, want RESOURCE_EXHAUSTED", err)
		}
	}
	// Under the message limit, over the XFCC cap: refused as malformed.
	for i := range 100 {
		resp := h.check(envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: p.good.Raw, SourceAddr: "198.51.100.9:1000",
			Host: "api.bank.example", Method: "GET", Path: "/", RequestID: fmt.Sprintf("big-%d", i),
			Headers: big(i, 900<<10),
		}))
		if statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(threat.ReasonCertMalformed) {
			t.Fatalf("a 900 KiB XFCC: got %v, want deny CERT_MALFORMED", resp.GetStatus())
		}
	}
	// And a leaf over the certificate cap.
	resp := h.check(envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", Certificate: strings.Repeat("A", DefaultMaxCertificateBytes+1), SourceAddr: "198.51.100.9:1000",
		Host: "api.bank.example", Method: "GET", Path: "/",
	}))
	if statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(threat.ReasonCertMalformed) {
		t.Fatalf("an oversize leaf: got %v, want deny CERT_MALFORMED", resp.GetStatus())
	}
	if n, b := h.svc.certs.stats(); n != 0 || b != 0 {
		t.Fatalf("the certificate cache holds %d entries, %d bytes after refused input", n, b)
	}
	// Generous: the old code kept ~390 MB here.
	if after := heapAfterGC(); after > before+64<<20 {
		t.Fatalf("live heap grew from %d to %d bytes", before, after)
	}
	// A good certificate is still cached, within its byte accounting.
	if resp := h.check(goodCheck(p, "198.51.100.10", "good")); statusCode(resp) != codes.OK {
		t.Fatalf("good certificate: %v", resp.GetStatus())
	}
	if n, b := h.svc.certs.stats(); n != 1 || b <= int64(len(p.good.Raw)) || b > int64(len(p.good.Raw))+1024 {
		t.Fatalf("after one good certificate the cache holds %d entries, %d bytes", n, b)
	}
}

// The certificate cache is bounded by bytes: many distinct chains evict the
// oldest, and the accounted bytes never pass the budget.
func TestCertCacheByteBudget(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	const budget = 64 << 10
	h := startHarness(t, p.loadConfig(t, modeYAML(p.caFile(), testModes[0])), func(o *Options) { o.CertCacheBytes = budget })
	xfcc := envoytest.XFCC([][]byte{p.good.Raw})
	for i := range 300 {
		req := goodCheck(p, "198.51.100.11", fmt.Sprintf("r%d", i))
		// One element, a new By each time: a distinct key, the same chain.
		req.Attributes.Request.Http.Headers[HeaderXFCC] = fmt.Sprintf("By=spiffe://mcc/%d;", i) + xfcc
		if resp := h.check(req); statusCode(resp) != codes.OK {
			t.Fatalf("request %d: %v", i, resp.GetStatus())
		}
		if _, b := h.svc.certs.stats(); b > budget {
			t.Fatalf("cache at %d bytes, budget %d", b, budget)
		}
	}
	n, b := h.svc.certs.stats()
	if n == 0 || n >= 300 || b > budget {
		t.Fatalf("cache holds %d entries in %d bytes (budget %d)", n, b, budget)
	}
	if !hasMetric(h.metrics(), "mcc_authz_cert_cache_bytes", fmt.Sprint(b)) {
		t.Errorf("mcc_authz_cert_cache_bytes does not report %d", b)
	}
}

// XFCC with two elements is refused unless allowed: SANITIZE_SET writes
// exactly one, so a second one was written by someone else.
func TestCheckRefusesSeveralXFCCElements(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	xfcc := envoytest.XFCC([][]byte{p.good.Raw})
	two := xfcc + "," + xfcc
	for _, allow := range []bool{false, true} {
		h := startHarness(t, p.loadConfig(t, modeYAML(p.caFile(), testModes[0])), func(o *Options) { o.XFCCAllowMultipleElements = allow })
		req := goodCheck(p, "198.51.100.12", "two")
		req.Attributes.Request.Http.Headers[HeaderXFCC] = two
		resp := h.check(req)
		switch {
		case !allow && (statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(threat.ReasonSpoofedCertHeader)):
			t.Errorf("two elements: got %v, want deny SPOOFED_CERT_HEADER", resp.GetStatus())
		case allow && statusCode(resp) != codes.OK:
			t.Errorf("two elements, allowed: got %v, want the right-most read and allowed", resp.GetStatus())
		}
	}
}

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// loggedService is a Service wired like `mcc authz`: JSON logs at info
// level, events to the log and to a file. The clock stands still unless
// the test moves it.
// testClock is a clock that moves only when the test says so.
type testClock = testclock.Clock

func loggedService(t *testing.T, p *testPKI, mod func(*Options)) (*Service, *syncBuffer, *threat.Pipeline, string, *testClock) {
	t.Helper()
	logBuf := &syncBuffer{}
	enc := zap.NewProductionEncoderConfig()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(logBuf), zapcore.InfoLevel))
	eventsFile := filepath.Join(t.TempDir(), "events.jsonl")
	fileSink, err := threat.NewFileSink(eventsFile, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	pipeline := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{threat.NewLogSink(log.Named("events")), fileSink}})
	clock := testclock.New(time.Now())
	o := Options{Config: p.loadConfig(t, failSafeYAML(p.caFile())), Pipeline: pipeline, Logger: log, Node: "test-node",
		Clock: clock.Now}
	if mod != nil {
		mod(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return svc, logBuf, pipeline, eventsFile, clock
}

func closePipeline(t *testing.T, p *threat.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// The log amplification of issue 9: one 1 MB access-log message wrote
// 52 MB of events and 52 MB of log. The node and log name are cut, every
// copied string is cut, and a stream scores at most its burst of handshake
// failures at once; the rest are counted.
func TestAccessLogMessageIsBounded(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	svc, logBuf, pipeline, eventsFile, _ := loggedService(t, p, nil)
	sv := serve(t, svc, ServeOptions{}, false)
	cc := dial(t, sv.grpcAddr, nil)

	// A 100 KiB node id and log name, and as many ~400-byte handshake
	// failures as fit in about 1 MB.
	long := strings.Repeat("x", 100<<10)
	msg := envoytest.TCPLogs(long, long)
	entries := 0
	for size := proto.Size(msg); size < 950_000; entries++ {
		e := envoytest.TCPEntry(envoytest.Connection{
			RemoteAddr: fmt.Sprintf("198.51.%d.%d:%d", 100+entries/250%100, entries%250+1, 1000+entries%60000), LocalAddr: "192.0.2.1:443",
			SNI: "api.bank.example", FailureReason: envoytest.HandshakeFailure + strings.Repeat("!", 200),
			CustomTags: map[string]string{"fusion_set": "bank"},
		})
		msg.GetTcpLogs().LogEntry = append(msg.GetTcpLogs().LogEntry, e)
		size += proto.Size(e) + 4
	}
	if size := proto.Size(msg); size < 900_000 || size > DefaultMaxRecvMsgSize {
		t.Fatalf("test message is %d bytes, want about 1 MB", size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := accesslogv3.NewAccessLogServiceClient(cc).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	closePipeline(t, pipeline)

	data, err := os.ReadFile(eventsFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		if len(sc.Bytes()) > 4<<10 {
			t.Errorf("an event is %d bytes", len(sc.Bytes()))
		}
		if bytes.Contains(sc.Bytes(), []byte(long[:1024])) {
			t.Errorf("an event carries the 100 KiB node or log name")
		}
	}
	if lines != DefaultHandshakeFailureBurst {
		t.Errorf("%d events from one message, want the burst of %d", lines, DefaultHandshakeFailureBurst)
	}
	if len(data) > DefaultHandshakeFailureBurst*4<<10 {
		t.Errorf("%d bytes of events", len(data))
	}
	// Each event is logged once by the log sink, plus a few sampled lines.
	if n := logBuf.Len(); n > 2*len(data)+64<<10 {
		t.Errorf("%d bytes of log for %d bytes of events", n, len(data))
	}
	want := fmt.Sprint(entries - DefaultHandshakeFailureBurst)
	if !hasMetric(metricsOf(t, sv.adminURL), "mcc_authz_handshake_failures_dropped_total", want) {
		t.Errorf("dropped failures not counted as %s", want)
	}

	// Over the message limit: refused by gRPC, nothing read.
	msg = envoytest.TCPLogs("envoy-1", HandshakeLogName, envoytest.TCPEntry(envoytest.Connection{
		RemoteAddr: "198.51.100.1:1", LocalAddr: "192.0.2.1:443", FailureReason: strings.Repeat("y", DefaultMaxRecvMsgSize)}))
	stream, err = accesslogv3.NewAccessLogServiceClient(cc).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(msg)
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a message over %d bytes: %v, want RESOURCE_EXHAUSTED", DefaultMaxRecvMsgSize, err)
	}
}

// A stream that floods handshake failures is held to its token bucket: the
// burst is scored at once, then the rate; the drops are counted in the
// metric and on /status.
func TestHandshakeFailuresRateLimitedPerStream(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	svc, _, pipeline, eventsFile, now := loggedService(t, p, func(o *Options) {
		o.HandshakeFailureRate, o.HandshakeFailureBurst = 1, 5
	})
	sv := serve(t, svc, ServeOptions{}, false)
	cc := dial(t, sv.grpcAddr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := accesslogv3.NewAccessLogServiceClient(cc).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			node := ""
			if i == 0 {
				node = "envoy-1"
			}
			// A new address each time, so no ban changes the events.
			if err := stream.Send(envoytest.TCPLogs(node, HandshakeLogName, envoytest.TCPEntry(envoytest.Connection{
				RemoteAddr: fmt.Sprintf("198.51.100.%d:%d", i%250+1, 2000+i), LocalAddr: "192.0.2.1:443",
				SNI: "api.bank.example", FailureReason: envoytest.HandshakeFailure}))); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 50)
	// Entries are handled in order on the stream: an HTTP-only message
	// after them is a barrier only in time, so wait through /status.
	waitStatus(t, sv.adminURL, func(st Status) bool { return st.AccessLog.HandshakeFailuresDropped == 45 })
	now.Add(3 * time.Second) // three more tokens
	send(50, 10)
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	closePipeline(t, pipeline)
	data, err := os.ReadFile(eventsFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 5+3 {
		t.Errorf("%d events, want 5 (burst) + 3 (three seconds at 1/s)", n)
	}
	if !hasMetric(metricsOf(t, sv.adminURL), "mcc_authz_handshake_failures_dropped_total", "52") {
		t.Errorf("drops not counted as 52")
	}
}

func waitStatus(t *testing.T, adminURL string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var st Status
	for time.Now().Before(deadline) {
		st = getStatus(t, adminURL, testMetricsToken)
		if ok(st) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("status never reached the expected state: %+v", st)
	return st
}

func getStatus(t *testing.T, adminURL, token string) Status {
	t.Helper()
	req, _ := http.NewRequest("GET", adminURL+"/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/status: %d %s", resp.StatusCode, b)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("/status is not JSON: %v\n%s", err, b)
	}
	return st
}
