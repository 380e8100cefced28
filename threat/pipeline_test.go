package threat_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

// generous bounds waits on a loaded machine; nothing asserts on elapsed time.
const generous = 60 * time.Second

// stalledSink blocks in Deliver until release is closed, ignoring its
// context, like a sink stuck on a dead network peer.
type stalledSink struct {
	release  chan struct{}
	entered  chan struct{}
	once     sync.Once
	inFlight atomic.Int64
	closed   atomic.Bool
}

func newStalledSink(t *testing.T) *stalledSink {
	s := &stalledSink{release: make(chan struct{}), entered: make(chan struct{})}
	t.Cleanup(func() { s.unblock() })
	return s
}

func (s *stalledSink) unblock() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

func (s *stalledSink) Name() string { return "stalled" }

func (s *stalledSink) Deliver(_ context.Context, batch []*threat.Event) error {
	s.inFlight.Store(int64(len(batch)))
	s.once.Do(func() { close(s.entered) })
	<-s.release
	s.inFlight.Store(0)
	return nil
}

func (s *stalledSink) Close() error { s.closed.Store(true); return nil }

func sampleEvents(n int) []*threat.Event {
	out := make([]*threat.Event, n)
	proto := threattest.Event(threat.ReasonNoClientCert)
	for i := range out {
		e := *proto
		e.ID = threat.NewEventID()
		e.ExternalID = fmt.Sprintf("req-%d", i)
		out[i] = &e
	}
	return out
}

func statsOf(t *testing.T, p *threat.Pipeline, name string) threat.SinkStats {
	t.Helper()
	for _, s := range p.Stats() {
		if s.Sink == name {
			return s
		}
	}
	t.Fatalf("no stats for sink %q in %+v", name, p.Stats())
	return threat.SinkStats{}
}

func TestPipelineStalledSinkDoesNotStallEmitOrOtherSinks(t *testing.T) {
	stalled := newStalledSink(t)
	rec := threattest.NewUncheckedRecorder("rec")
	const n = 100_000
	p := threat.NewPipeline(threat.PipelineOptions{
		Sinks:     []threat.Sink{stalled, rec},
		QueueSize: n, // room for every event, so the healthy sink must get them all
	})
	events := sampleEvents(n)

	// Emit returns for every event although one sink takes nothing: if it
	// blocked on the stalled sink this loop would never finish.
	for _, e := range events {
		p.Emit(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	got, err := rec.WaitFor(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e != events[i] {
			t.Fatalf("event %d out of order or changed", i)
		}
	}
	<-stalled.entered

	// Overflow the stalled sink's queue: everything beyond it is dropped
	// and counted, and the healthy sink still gets every event.
	more := sampleEvents(n / 2)
	for _, e := range more {
		p.Emit(e)
	}
	if _, err := rec.WaitFor(ctx, n+n/2); err != nil {
		t.Fatal(err)
	}
	st := statsOf(t, p, "stalled")
	inFlight := int(stalled.inFlight.Load())
	if st.Delivered != 0 || st.Dropped == 0 {
		t.Errorf("stalled sink stats %+v: want nothing delivered and drops counted", st)
	}
	if total := int(st.Dropped) + st.Queued + inFlight; total != n+n/2 {
		t.Errorf("stalled sink: dropped %d + queued %d + in flight %d = %d, want every emitted event (%d) accounted for",
			st.Dropped, st.Queued, inFlight, total, n+n/2)
	}
	if rs := statsOf(t, p, "rec"); rs.Delivered != n+n/2 || rs.Dropped != 0 || rs.Failed != 0 {
		t.Errorf("healthy sink stats %+v", rs)
	}
	tot := p.Totals()
	if tot.Emitted != n+n/2 || tot.Delivered != n+n/2 || tot.Dropped != st.Dropped {
		t.Errorf("totals %+v", tot)
	}

	// Close gives up on the stalled sink when its context ends, but the
	// healthy sink is drained and closed.
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if err := p.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want a deadline error", err)
	}
	waitFor(t, "healthy sink closed", rec.Closed)
	if stalled.closed.Load() {
		t.Error("stalled sink closed while its Deliver was running")
	}
	// Once the stalled sink returns, its dispatcher closes it.
	stalled.unblock()
	waitFor(t, "stalled sink closed", stalled.closed.Load)
}

func TestPipelineDropsWhenQueueFull(t *testing.T) {
	stalled := newStalledSink(t)
	const queue, batch, n = 10, 4, 100
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{stalled}, QueueSize: queue, BatchSize: batch})
	p.Emit(sampleEvents(1)[0])
	<-stalled.entered // the dispatcher holds that one event in Deliver
	for _, e := range sampleEvents(n) {
		p.Emit(e)
	}
	st := statsOf(t, p, "stalled")
	if st.Queued != queue || st.Dropped != n-queue {
		t.Errorf("stats %+v, want %d queued and %d dropped", st, queue, n-queue)
	}
	stalled.unblock()
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st = statsOf(t, p, "stalled")
	if st.Delivered != queue+1 || st.Queued != 0 {
		t.Errorf("after Close: %+v, want %d delivered", st, queue+1)
	}
}

// slowSink waits for its gate (when set), takes a little time per batch and
// records batch sizes.
type slowSink struct {
	rec     *threattest.Recorder
	gate    chan struct{}
	mu      sync.Mutex
	batches []int
}

func (s *slowSink) Name() string { return "slow" }
func (s *slowSink) Deliver(ctx context.Context, b []*threat.Event) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.batches = append(s.batches, len(b))
	s.mu.Unlock()
	time.Sleep(100 * time.Microsecond)
	return s.rec.Deliver(ctx, b)
}
func (s *slowSink) Close() error { return s.rec.Close() }

func TestPipelineCloseDrains(t *testing.T) {
	slow := &slowSink{rec: threattest.NewUncheckedRecorder("slow"), gate: make(chan struct{})}
	const n, batch = 20_000, 100
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{slow}, QueueSize: n, BatchSize: batch})
	for _, e := range sampleEvents(n) {
		p.Emit(e)
	}
	// The sink has taken at most one batch: the rest waits in the queue.
	if st := statsOf(t, p, "slow"); st.Queued < n-batch {
		t.Fatalf("stats %+v, want at least %d queued", st, n-batch)
	}
	go close(slow.gate)
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := slow.rec.Len(); got != n {
		t.Errorf("delivered %d events before Close returned, want %d", got, n)
	}
	if !slow.rec.Closed() {
		t.Error("sink not closed")
	}
	slow.mu.Lock()
	for _, b := range slow.batches {
		if b < 1 || b > batch {
			t.Errorf("batch of %d events, want 1..%d", b, batch)
		}
	}
	slow.mu.Unlock()
	if st := statsOf(t, p, "slow"); st.Delivered != n || st.Queued != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}

	// Emit after Close neither panics nor delivers; it counts a drop.
	p.Emit(sampleEvents(1)[0])
	if st := statsOf(t, p, "slow"); st.Dropped != 1 {
		t.Errorf("emit after close: %+v, want 1 dropped", st)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPipelineFlushIntervalFillsBatches(t *testing.T) {
	slow := &slowSink{rec: threattest.NewRecorder("slow")}
	// A flush interval far longer than the test: batches are delivered
	// because they fill up, or because Close flushes the partial one.
	p := threat.NewPipeline(threat.PipelineOptions{
		Sinks: []threat.Sink{slow}, BatchSize: 5, FlushInterval: time.Hour,
	})
	for _, e := range sampleEvents(12) {
		p.Emit(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if _, err := slow.rec.WaitFor(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if got := slow.rec.Len(); got != 10 {
		t.Errorf("%d events delivered, want two full batches (10)", got)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if fmt.Sprint(slow.batches) != "[5 5 2]" {
		t.Errorf("batches %v, want [5 5 2]", slow.batches)
	}
}

func TestPipelineFlushIntervalDeliversPartialBatch(t *testing.T) {
	rec := threattest.NewRecorder("rec")
	p := threat.NewPipeline(threat.PipelineOptions{
		Sinks: []threat.Sink{rec}, BatchSize: 1000, FlushInterval: 10 * time.Millisecond,
	})
	defer p.Close(context.Background())
	for _, e := range sampleEvents(3) {
		p.Emit(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	if _, err := rec.WaitFor(ctx, 3); err != nil {
		t.Fatal(err)
	}
}

// failingSink fails every batch, or panics.
type failingSink struct {
	panics bool
	calls  atomic.Int64
}

func (s *failingSink) Name() string {
	if s.panics {
		return "panicking"
	}
	return "failing"
}
func (s *failingSink) Deliver(context.Context, []*threat.Event) error {
	s.calls.Add(1)
	if s.panics {
		panic("sink bug")
	}
	return errors.New("webhook answered 503")
}
func (s *failingSink) Close() error { return nil }

func TestPipelineCountsFailuresAndLogsRateLimited(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	failing, panicking := &failingSink{}, &failingSink{panics: true}
	rec := threattest.NewRecorder("rec")
	p := threat.NewPipeline(threat.PipelineOptions{
		Sinks:  []threat.Sink{failing, panicking, rec},
		Logger: zap.New(core), BatchSize: 1,
	})
	const n = 50
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	for _, e := range sampleEvents(n) {
		p.Emit(e)
		// One at a time, so that every event is its own failed batch.
		waitFor(t, "event delivered", func() bool { return rec.Len() == int(p.Totals().Emitted) })
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"failing", "panicking"} {
		st := statsOf(t, p, name)
		if st.Failed != n || st.Delivered != 0 || st.Dropped != 0 {
			t.Errorf("%s: %+v, want %d failed", name, st, n)
		}
	}
	if st := statsOf(t, p, "rec"); st.Delivered != n {
		t.Errorf("healthy sink: %+v", st)
	}
	// 50 failures per sink: one log line per sink per 10 s, not 50. (On a
	// very slow machine the test may span more than one 10 s period.)
	most := 1 + int(time.Since(start)/(10*time.Second))
	for _, name := range []string{"failing", "panicking"} {
		lines := logs.FilterMessage("delivering threat events").FilterField(zap.String("sink", name)).Len()
		if lines < 1 || lines > most {
			t.Errorf("%s: %d failure log lines, want 1..%d (rate limited)", name, lines, most)
		}
	}
}

func TestPipelineNilAndEmpty(t *testing.T) {
	var p *threat.Pipeline
	p.Emit(sampleEvents(1)[0]) // nil pipeline: no-op
	if err := p.Close(context.Background()); err != nil {
		t.Error(err)
	}
	if p.Stats() != nil {
		t.Error("nil pipeline has stats")
	}
	empty := threat.NewPipeline(threat.PipelineOptions{})
	empty.Emit(sampleEvents(1)[0])
	empty.Emit(nil)
	if got := empty.Totals(); got.Emitted != 1 {
		t.Errorf("totals %+v", got)
	}
	if err := empty.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestPipelineEmitDoesNotAllocate(t *testing.T) {
	rec := threattest.NewRecorder("rec")
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{rec, newStalledSink(t)}, QueueSize: 16})
	e := sampleEvents(1)[0]
	if n := testing.AllocsPerRun(1000, func() { p.Emit(e) }); n != 0 {
		t.Errorf("Emit: %v allocs, want 0", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type panickyCloser struct{ nopSink }

func (panickyCloser) Close() error { panic("close bug") }

func TestPipelineSurvivesPanickingClose(t *testing.T) {
	rec := threattest.NewRecorder("rec")
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{panickyCloser{}, rec}})
	p.Emit(sampleEvents(1)[0])
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	defer cancel()
	err := p.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "panicked while closing") {
		t.Errorf("Close = %v, want the sink's panic as an error", err)
	}
	if !rec.Closed() || rec.Len() != 1 {
		t.Errorf("healthy sink: closed %v, %d events", rec.Closed(), rec.Len())
	}
}
