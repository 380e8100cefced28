package fusion_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

// fakeClock is the shared settable test clock.
type fakeClock = testclock.Clock

func newFakeClock(t time.Time) *fakeClock { return testclock.New(t) }

// loadEngine loads path and starts an engine on it.
func loadEngine(t testing.TB, path string, opts fusion.Options) *fusion.Engine {
	t.Helper()
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	if opts.Gateway == "" {
		opts.Gateway = threat.GatewayCaddy
	}
	e, err := fusion.NewEngine(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// recordingPipeline returns a pipeline delivering to a schema-checking
// recorder; it is closed when the test ends.
func recordingPipeline(t testing.TB) (*threat.Pipeline, *threattest.Recorder) {
	t.Helper()
	rec := threattest.NewRecorder("test")
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{rec}, FlushInterval: time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, rec
}

// request is a typical gateway request carrying the case's chain.
func request(tc fusiontest.Case, ip string) *fusion.Request {
	return &fusion.Request{
		PeerCertificates: tc.Chain,
		ClientIP:         ip,
		SNI:              "api.example.com",
		Host:             "api.example.com",
		Method:           "GET",
		Path:             "/v1/accounts",
		Header:           map[string][]string{fusiontest.HeaderDeviceID: {"device-42"}, fusiontest.HeaderOSVersion: {"iOS 19.1"}},
		RequestID:        "req-" + tc.Name,
	}
}

func waitCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// copyFile copies from over to, atomically (a temporary file renamed over
// it), as a CRL should be published: an in-place write can be read
// half-written by the watcher, which rightly refuses it as malformed, and
// that transient refusal is not what the tests that copy files are about.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, to)
}

// startWatch runs e.Watch until the test ends, and waits for it to return
// before the test's temporary files are removed.
func startWatch(t *testing.T, e *fusion.Engine, onReload func(*fusion.Config), onError func(error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Watch(ctx, 10*time.Millisecond, onReload, onError)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// trySend sends without blocking, so a Watch callback never stalls Watch.
func trySend[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
