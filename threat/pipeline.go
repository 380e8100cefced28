package threat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Pipeline defaults.
const (
	DefaultQueueSize = 8192
	DefaultBatchSize = 256
)

// failureLogEvery rate-limits the log line a failing sink produces: one
// line per sink per interval, carrying how many failures it stands for.
const failureLogEvery = 10 * time.Second

// PipelineOptions configures a Pipeline.
type PipelineOptions struct {
	Sinks []Sink
	// QueueSize bounds each sink's queue (DefaultQueueSize when <= 0). When a
	// sink's queue is full, Emit drops the event for that sink and counts it.
	QueueSize int
	// BatchSize is the most events handed to one Deliver call
	// (DefaultBatchSize when <= 0).
	BatchSize int
	// FlushInterval, when positive, is how long a sink's dispatcher waits
	// for a batch to fill before delivering a partial one. When zero, a
	// batch is delivered as soon as the queue is empty, so events reach the
	// sink with no added delay and batches grow only under load.
	FlushInterval time.Duration
	// Logger receives sink failures, rate-limited (zap.NewNop when nil).
	Logger *zap.Logger
}

// SinkStats are one sink's counters. Delivered, Dropped and Failed count
// events and only ever grow, so they map onto Prometheus counters; Queued is
// a gauge.
type SinkStats struct {
	Sink      string
	Delivered uint64 // events the sink accepted
	Dropped   uint64 // events refused because the sink's queue was full or the pipeline closed
	Failed    uint64 // events in batches the sink returned an error for
	Queued    int    // events waiting in the sink's queue now
}

// PipelineStats are the totals over every sink, plus the events emitted.
type PipelineStats struct {
	Emitted   uint64
	Delivered uint64
	Dropped   uint64
	Failed    uint64
	Queued    int
}

// Pipeline fans events out to sinks. Each sink has its own bounded queue and
// goroutine, so a slow or stalled sink never slows Emit, the request that
// called it, or any other sink: it only loses its own events, and they are
// counted.
type Pipeline struct {
	workers []*sinkWorker
	emitted atomic.Uint64
	closed  atomic.Bool
	// stop tells the workers to drain and exit; cancel aborts the context
	// that Deliver calls run under, when Close's context ends.
	stop      chan struct{}
	allDone   chan struct{} // closed when every dispatcher has closed its sink
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// NewPipeline starts one dispatcher goroutine per sink. Close stops them.
func NewPipeline(o PipelineOptions) *Pipeline {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{stop: make(chan struct{}), allDone: make(chan struct{}), cancel: cancel}
	var wg sync.WaitGroup
	for _, s := range o.Sinks {
		if s == nil {
			continue
		}
		w := &sinkWorker{
			sink:     s,
			name:     s.Name(),
			queue:    make(chan *Event, o.QueueSize),
			batch:    o.BatchSize,
			interval: o.FlushInterval,
			logger:   o.Logger.With(zap.String("sink", s.Name())),
		}
		p.workers = append(p.workers, w)
		wg.Go(func() { w.run(ctx, p.stop) })
	}
	go func() {
		wg.Wait()
		close(p.allDone)
	}()
	return p
}

// Emit queues e for every sink and returns at once: it never blocks and never
// allocates. A sink whose queue is full misses the event and counts a drop.
// The event is shared by every sink: nobody may change it after Emit.
// Emit on a nil Pipeline does nothing, so callers need not check.
func (p *Pipeline) Emit(e *Event) {
	if p == nil || e == nil {
		return
	}
	p.emitted.Add(1)
	if p.closed.Load() {
		for _, w := range p.workers {
			w.dropped.Add(1)
		}
		return
	}
	for _, w := range p.workers {
		select {
		case w.queue <- e:
		default:
			w.dropped.Add(1)
		}
	}
}

// Close stops accepting events, lets every sink drain its queue and closes
// the sinks. When ctx ends first, Close cancels the context of the Deliver
// calls in flight, counts what is still queued as dropped and returns
// ctx's error; a sink stuck in Deliver is closed by its dispatcher when
// Deliver returns. Close is safe to call more than once.
func (p *Pipeline) Close(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.stop)
	})
	select {
	case <-p.allDone:
	case <-ctx.Done():
		p.cancel()
		return fmt.Errorf("draining threat event sinks: %w", ctx.Err())
	}
	p.cancel()
	var errs []error
	for _, w := range p.workers {
		if w.closeErr != nil {
			errs = append(errs, fmt.Errorf("closing sink %q: %w", w.name, w.closeErr))
		}
	}
	return errors.Join(errs...)
}

// Stats returns each sink's counters, in the order the sinks were given.
func (p *Pipeline) Stats() []SinkStats {
	if p == nil {
		return nil
	}
	out := make([]SinkStats, len(p.workers))
	for i, w := range p.workers {
		out[i] = SinkStats{
			Sink:      w.name,
			Delivered: w.delivered.Load(),
			Dropped:   w.dropped.Load(),
			Failed:    w.failed.Load(),
			Queued:    len(w.queue),
		}
	}
	return out
}

// Totals sums Stats over every sink and adds the number of events emitted.
func (p *Pipeline) Totals() PipelineStats {
	if p == nil {
		return PipelineStats{}
	}
	t := PipelineStats{Emitted: p.emitted.Load()}
	for _, w := range p.workers {
		t.Delivered += w.delivered.Load()
		t.Dropped += w.dropped.Load()
		t.Failed += w.failed.Load()
		t.Queued += len(w.queue)
	}
	return t
}

// sinkWorker owns one sink: its queue, its goroutine and its counters.
type sinkWorker struct {
	sink     Sink
	name     string
	queue    chan *Event
	batch    int
	interval time.Duration
	logger   *zap.Logger

	delivered, dropped, failed atomic.Uint64

	// Failure logging state, touched only by the worker goroutine.
	lastLog    time.Time
	suppressed uint64

	closeErr error // set before the dispatcher exits
}

func (w *sinkWorker) run(ctx context.Context, stop <-chan struct{}) {
	batch := make([]*Event, 0, w.batch)
	var timer *time.Timer
	if w.interval > 0 {
		timer = time.NewTimer(w.interval)
		timer.Stop()
	}
	for {
		// Wait for the first event of a batch, or for Close.
		select {
		case e := <-w.queue:
			batch = append(batch, e)
		case <-stop:
			w.drain(ctx, batch)
			return
		}
		batch = w.fill(batch, timer, stop)
		w.deliver(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// fill tops batch up from the queue: with no flush interval it takes what is
// already queued; with one it waits up to the interval, counted from the
// batch's first event, for the batch to fill.
func (w *sinkWorker) fill(batch []*Event, timer *time.Timer, stop <-chan struct{}) []*Event {
	batch = w.takeQueued(batch)
	if timer == nil || len(batch) >= w.batch {
		return batch
	}
	timer.Reset(w.interval)
	defer timer.Stop()
	for len(batch) < w.batch {
		select {
		case e := <-w.queue:
			batch = w.takeQueued(append(batch, e))
		case <-timer.C:
			return batch
		case <-stop:
			return batch
		}
	}
	return batch
}

// drain delivers everything still queued, then closes the sink. When ctx is
// cancelled (Close gave up) the rest is counted as dropped.
func (w *sinkWorker) drain(ctx context.Context, batch []*Event) {
	for {
		batch = w.takeQueued(batch)
		if len(batch) == 0 {
			break
		}
		if ctx.Err() != nil {
			w.dropped.Add(uint64(len(batch) + len(w.queue)))
			break
		}
		w.deliver(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
	w.closeErr = w.safeClose()
}

// takeQueued tops batch up with events already queued, without waiting.
func (w *sinkWorker) takeQueued(batch []*Event) []*Event {
	for len(batch) < w.batch {
		select {
		case e := <-w.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (w *sinkWorker) deliver(ctx context.Context, batch []*Event) {
	if len(batch) == 0 {
		return
	}
	err := w.safeDeliver(ctx, batch)
	if err == nil {
		w.delivered.Add(uint64(len(batch)))
		return
	}
	w.failed.Add(uint64(len(batch)))
	now := time.Now()
	if now.Sub(w.lastLog) < failureLogEvery {
		w.suppressed++
		return
	}
	w.logger.Error("delivering threat events",
		zap.Int("events", len(batch)),
		zap.Uint64("failures_suppressed", w.suppressed),
		zap.Error(err))
	w.lastLog = now
	w.suppressed = 0
}

// safeDeliver turns a panicking sink into a failed batch: a bug in one sink
// must not take the gateway down.
func (w *sinkWorker) safeDeliver(ctx context.Context, batch []*Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sink panicked: %v", r)
		}
	}()
	return w.sink.Deliver(ctx, batch)
}

func (w *sinkWorker) safeClose() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sink panicked while closing: %v", r)
		}
	}()
	return w.sink.Close()
}
