package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// ErrUnavailable is returned, without touching the network, while the circuit
// breaker is open because Redis stopped answering.
var ErrUnavailable = errors.New("redis store unavailable (circuit breaker open)")

// Stats are the store's health and counters. Errors, Trips and Rejected only
// ever grow, so they map onto Prometheus counters; Up is a gauge.
type Stats struct {
	// Up is false while the breaker is open.
	Up bool
	// Errors counts calls that reached Redis (or tried to) and failed.
	Errors uint64
	// Trips counts how many times the breaker opened.
	Trips uint64
	// Rejected counts calls refused at once while the breaker was open.
	Rejected uint64
}

// breaker is a circuit breaker over one Redis client. It opens after
// threshold consecutive failures and closes when a background PING succeeds;
// while open, callers are refused without waiting.
type breaker struct {
	threshold int32
	cooldown  time.Duration
	budget    time.Duration
	ping      func(ctx context.Context) error
	log       *zap.Logger

	open     atomic.Bool
	failures atomic.Int32
	errs     atomic.Uint64
	trips    atomic.Uint64
	rejected atomic.Uint64

	// mu orders starting a probe against stop, so that stop never waits
	// for a probe it did not see.
	mu      sync.Mutex
	stopped bool
	done    chan struct{}
	wg      sync.WaitGroup
}

func newBreaker(threshold int, cooldown, budget time.Duration, ping func(context.Context) error, log *zap.Logger) *breaker {
	return &breaker{
		threshold: int32(threshold),
		cooldown:  cooldown,
		budget:    budget,
		ping:      ping,
		log:       log,
		done:      make(chan struct{}),
	}
}

// allow reports whether a call may go to Redis, counting the refusal if not.
func (b *breaker) allow() bool {
	if b.open.Load() {
		b.rejected.Add(1)
		return false
	}
	return true
}

// record notes the outcome of a call that went to Redis.
func (b *breaker) record(err error) {
	if err == nil {
		// Load first: a store on every success would make all CPUs
		// fight over one cache line on the hot path.
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		return
	}
	b.errs.Add(1)
	if !isOutage(err) {
		return
	}
	if b.failures.Add(1) >= b.threshold {
		b.trip(err)
	}
}

// trip opens the breaker, unless it is open already, and starts the probe.
func (b *breaker) trip(cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || !b.open.CompareAndSwap(false, true) {
		return
	}
	b.trips.Add(1)
	b.log.Warn("redis store down: scoring falls back to each gateway's memory until it answers again",
		zap.Error(cause), zap.Duration("probe_every", b.cooldown))
	b.wg.Add(1)
	go b.probe(time.Now())
}

// probe PINGs Redis every cooldown until it answers, then closes the breaker.
func (b *breaker) probe(since time.Time) {
	defer b.wg.Done()
	t := time.NewTicker(b.cooldown)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.budget)
		err := b.ping(ctx)
		cancel()
		if err != nil {
			continue
		}
		b.failures.Store(0)
		b.open.Store(false)
		b.log.Info("redis store up again", zap.Duration("down_for", time.Since(since).Round(time.Millisecond)))
		return
	}
}

func (b *breaker) stats() Stats {
	return Stats{
		Up:       !b.open.Load(),
		Errors:   b.errs.Load(),
		Trips:    b.trips.Load(),
		Rejected: b.rejected.Load(),
	}
}

// stop ends the probe, if one runs, and waits for it.
func (b *breaker) stop() {
	b.mu.Lock()
	b.stopped = true
	close(b.done)
	b.mu.Unlock()
	b.wg.Wait()
}

// isOutage reports whether err says Redis is unreachable or too slow, as
// opposed to an error reply from a server that is up (a script error, a
// wrong password) or a caller that gave up.
func isOutage(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	return !errors.As(err, &re)
}
