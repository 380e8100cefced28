package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
)

// Stats are the sink's counters (events unless said otherwise; they only
// ever grow) and gauges (Pending, SpoolBytes).
type Stats struct {
	// Spooled counts events written to the spool.
	Spooled uint64
	// Delivered counts events the receiver accepted (2xx).
	Delivered uint64
	// Retried counts failed POSTs that were retried later (batches, not
	// events).
	Retried uint64
	// Dropped counts events lost: the oldest, when the spool was full,
	// and those that could not be encoded.
	Dropped uint64
	// Rejected counts events in batches the receiver refused as malformed
	// (400 or 422): retrying could not help, so they are not retried.
	Rejected uint64
	// Pending is the events spooled and not yet delivered.
	Pending int
	// SpoolBytes is the size of the spool on disk.
	SpoolBytes int64
}

// Sink is a threat.Sink that POSTs events to a webhook through an on-disk
// spool. See the package documentation.
type Sink struct {
	opts   Options
	name   string
	client *http.Client
	spool  *spool
	log    *zap.Logger

	wake    chan struct{} // an append happened (capacity 1)
	closing chan struct{} // Close was called: drain, then stop
	ctx     context.Context
	cancel  context.CancelFunc // aborts a POST when Close's time is up
	done    chan struct{}      // the sender has stopped

	spooled, delivered, retried, dropped, rejected atomic.Uint64

	dropMu        sync.Mutex
	dropLogged    time.Time
	dropUnlogged  uint64
	closingTried  bool // the sender's: it made its attempt after Close
	closeOnce     sync.Once
	closeErr      error
	deliverClosed atomic.Bool
}

var _ threat.Sink = (*Sink)(nil)

// New opens the spool in opts.SpoolDir, resuming delivery of whatever an
// earlier run left there, and starts the sender.
func New(opts Options) (*Sink, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(opts.URL) // checked by withDefaults
	sp, err := openSpool(opts.SpoolDir, opts.SpoolMaxBytes, opts.segmentBytes())
	if err != nil {
		return nil, fmt.Errorf("webhook sink: spool %s: %w", opts.SpoolDir, err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sink{
		opts: opts,
		name: "webhook:" + u.Host,
		client: &http.Client{Timeout: opts.Timeout, Transport: transport,
			// A redirect is not followed: it would resend the configured
			// headers (a token) to wherever the receiver points. The 3xx is
			// retried like any other failure, and logged.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		spool:   sp,
		log:     opts.Logger.With(zap.String("sink", "webhook"), zap.String("host", u.Host)),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	if pending, size := sp.stats(); pending > 0 {
		s.log.Info("webhook sink: resuming delivery of spooled events", zap.Int("events", pending), zap.Int64("bytes", size))
	}
	go s.run()
	return s, nil
}

// Name identifies the sink in pipeline stats.
func (s *Sink) Name() string { return s.name }

// Deliver appends the batch to the spool and returns: the sender goroutine
// POSTs it. It waits for the disk (one fsync per batch), never for the
// network. It fails only when the spool cannot be written.
func (s *Sink) Deliver(_ context.Context, batch []*threat.Event) error {
	if s.deliverClosed.Load() {
		return errors.New("webhook sink: closed")
	}
	recs := make([][]byte, 0, len(batch))
	for _, e := range batch {
		b, err := encodeLine(e)
		if err != nil {
			s.dropped.Add(1)
			s.log.Error("webhook sink: dropping an event that does not encode", zap.String("event_id", e.ID), zap.Error(err))
			continue
		}
		recs = append(recs, b)
	}
	written, dropped, err := s.spool.append(recs)
	s.spooled.Add(uint64(written))
	if dropped > 0 {
		s.noteDropped(uint64(dropped))
	}
	if err != nil {
		if errors.Is(err, errSpoolClosed) {
			return errors.New("webhook sink: closed")
		}
		return fmt.Errorf("webhook sink: %w", err)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// encodeLine returns e as one line of JSON ending in '\n', as the spool
// keeps it.
func encodeLine(e *threat.Event) ([]byte, error) {
	b, err := e.MarshalJSON() // already compact: json.Marshal would compact it again
	if err != nil {
		return nil, err
	}
	// encoding/json never writes a raw newline; should the event encoding
	// ever be indented, compact it.
	if bytes.IndexByte(b, '\n') >= 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			return nil, err
		}
		b = c.Bytes()
	}
	return append(b, '\n'), nil
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	pending, size := s.spool.stats()
	return Stats{
		Spooled:    s.spooled.Load(),
		Delivered:  s.delivered.Load(),
		Retried:    s.retried.Load(),
		Dropped:    s.dropped.Load(),
		Rejected:   s.rejected.Load(),
		Pending:    pending,
		SpoolBytes: size,
	}
}

// Close stops taking events, keeps delivering for up to
// Options.CloseTimeout, and leaves what is left in the spool for the next
// New on the same directory.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.deliverClosed.Store(true)
		close(s.closing)
		timer := time.AfterFunc(s.opts.CloseTimeout, s.cancel)
		<-s.done
		timer.Stop()
		s.cancel()
		s.flushDropLog()
		if pending, _ := s.spool.stats(); pending > 0 {
			s.log.Info("webhook sink: events left spooled for the next start", zap.Int("events", pending))
		}
		s.closeErr = s.spool.close()
		s.client.CloseIdleConnections()
	})
	return s.closeErr
}

// dropLogEvery rate-limits the spool-full warning: the first drop after a
// quiet spell is logged at once, later ones are summed into the next line.
const dropLogEvery = 10 * time.Second

func (s *Sink) noteDropped(n uint64) {
	s.dropped.Add(n)
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	s.dropUnlogged += n
	if time.Since(s.dropLogged) < dropLogEvery {
		return
	}
	s.logDropsLocked()
}

func (s *Sink) flushDropLog() {
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	if s.dropUnlogged > 0 {
		s.logDropsLocked()
	}
}

func (s *Sink) logDropsLocked() {
	s.log.Warn("webhook sink: spool full, dropped the oldest events",
		zap.Uint64("dropped", s.dropUnlogged), zap.Uint64("dropped_total", s.dropped.Load()),
		zap.Int64("spool_max_bytes", s.opts.SpoolMaxBytes))
	s.dropUnlogged = 0
	s.dropLogged = time.Now()
}
