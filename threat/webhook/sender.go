package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/version"
)

// userAgent identifies the sender to receivers: the wire format's
// version, then the mcc module version that sends (mcc server's gateways
// view shows it). Not the commit: receivers may be third parties.
var userAgent = "mcc-webhook/1 mcc/" + version.Get().Version

// errRejected marks a response that retrying cannot fix.
var errRejected = errors.New("receiver rejected the batch")

// sendError is a failed POST, with the wait the receiver asked for.
type sendError struct {
	err        error
	retryAfter time.Duration
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// run is the single sender: it delivers the spool in order, one batch at a
// time, retrying a failed batch until it is delivered. It stops when Close
// was called and either the spool is empty or a POST fails (what is left
// stays spooled), or when Close's time is up.
func (s *Sink) run() {
	defer close(s.done)
	failures := 0 // consecutive failed POSTs
	for {
		recs, pos, err := s.spool.peek(s.opts.BatchSize)
		if err != nil {
			s.log.Error("webhook sink: reading the spool", zap.Error(err))
			if !s.pause(s.opts.MaxBackoff) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			select {
			case <-s.wake:
				continue
			case <-s.closing:
				return
			}
		}

		err = s.post(recs)
		switch {
		case err == nil:
			s.delivered.Add(uint64(len(recs)))
			if failures > 0 {
				s.log.Info("webhook sink: receiver accepts events again", zap.Int("failed_attempts", failures))
				failures = 0
			}
		case errors.Is(err, errRejected):
			// Retrying the same bytes would fail forever and hold up
			// every event behind them.
			s.rejected.Add(uint64(len(recs)))
			s.log.Error("webhook sink: receiver rejected a batch; it is not retried",
				zap.Int("events", len(recs)), zap.Error(err))
		default:
			if s.ctx.Err() != nil {
				return // Close's time is up; the batch stays spooled
			}
			s.retried.Add(1)
			failures++
			if failures == 1 {
				s.log.Warn("webhook sink: receiver failing; events stay spooled and are retried",
					zap.Error(err), zap.Int("pending", s.Stats().Pending))
			}
			if !s.pause(s.backoff(failures, err)) {
				return
			}
			continue
		}
		if err := s.spool.commit(pos); err != nil {
			// Delivery went through; only the cursor is stale, which
			// means duplicates after a restart, not losses.
			s.log.Warn("webhook sink: saving the spool cursor", zap.Error(err))
		}
	}
}

// pause waits d. When Close is called meanwhile it returns at once: true if
// the sender should make its last attempts, false if it should stop.
func (s *Sink) pause(d time.Duration) bool {
	select {
	case <-s.closing:
		// One more try, unless this is a retry after closing already.
		return s.lastCall()
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return s.lastCall()
	}
}

// lastCall reports whether, closing, the sender should make one more
// attempt: once, and only while Close's time lasts. A receiver that is down
// should not hold Close for its whole deadline.
func (s *Sink) lastCall() bool {
	if s.closingTried {
		return false
	}
	s.closingTried = true
	return s.ctx.Err() == nil
}

// backoff is the wait after the n-th consecutive failure: exponential from
// MinBackoff, capped at MaxBackoff, with equal jitter so that gateways that
// failed together do not retry together; at least the receiver's
// Retry-After.
func (s *Sink) backoff(n int, err error) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < n && d < s.opts.MaxBackoff; i++ {
		d *= 2 // stops before it can overflow: MaxBackoff is a Duration too
	}
	d = min(d, s.opts.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	var se *sendError
	if errors.As(err, &se) && se.retryAfter > d {
		d = min(se.retryAfter, s.opts.MaxBackoff)
	}
	return d
}

// post sends one batch as {"events":[...]}.
func (s *Sink) post(recs [][]byte) error {
	size := len(`{"events":[]}`) + len(recs)
	for _, r := range recs {
		size += len(r)
	}
	body := make([]byte, 0, size)
	body = append(body, `{"events":[`...)
	for i, r := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	body = append(body, "]}"...)

	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.opts.URL, bytes.NewReader(body))
	if err != nil {
		return &sendError{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for k, v := range s.opts.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// Not the *url.Error itself: its text repeats the URL, which may
		// carry a token, into the log.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("POST: %w", ue.Err)
		}
		return &sendError{err: err}
	}
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		return fmt.Errorf("%w: %s", errRejected, resp.Status)
	default:
		return &sendError{err: fmt.Errorf("receiver answered %s", resp.Status), retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}
