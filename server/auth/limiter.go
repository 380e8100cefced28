package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiterSweepAt is the map size from which idle limiters are dropped,
// at most once per refill time, so a map of many busy keys is not scanned
// on every new key.
const limiterSweepAt = 1024

// limiterMaxKeys bounds the map when its keys are not bounded by a table
// (client addresses): past it, arbitrary buckets are dropped. A dropped
// key starts again with a full bucket, so the bound costs some leniency
// towards a caller with very many addresses, never memory.
const limiterMaxKeys = 1 << 16

// Limiter is a rate limiter per key: a token bucket per token id (the
// API's tokens) or per client address (the enrollment routes).
type Limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time // tests move it

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// NewLimiter allows each key (a token id, a client address) perSecond requests with bursts of burst.
// perSecond 0 turns limiting off.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return NewLimiterClock(perSecond, burst, time.Now)
}

// NewLimiterClock is NewLimiter on the given clock (the API's own, so a
// test that moves the server's clock moves its limits too).
func NewLimiterClock(perSecond float64, burst int, now func() time.Time) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, now: now, buckets: map[string]*bucket{}}
}

// Allow reports whether tokenID may make a request now, and if not, how
// long until it may.
func (l *Limiter) Allow(tokenID string) (ok bool, retryAfter time.Duration) {
	if l == nil || l.limit <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	b := l.buckets[tokenID]
	if b == nil {
		if n := len(l.buckets); n >= limiterMaxKeys || (n >= limiterSweepAt && now.Sub(l.lastSweep) >= l.refill()) {
			l.sweep(now)
			l.lastSweep = now
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[tokenID] = b
	}
	b.last = now
	l.mu.Unlock()
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		// Refused requests do not consume tokens.
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops buckets idle long enough to be full again: a new bucket is
// the same, so nothing is forgotten.
func (l *Limiter) sweep(now time.Time) {
	refill := l.refill()
	for id, b := range l.buckets {
		if now.Sub(b.last) > refill {
			delete(l.buckets, id)
		}
	}
	// Map order is random: what is left over the bound goes at random,
	// down to three quarters of it, so the next scan is far off.
	for id := range l.buckets {
		if len(l.buckets) <= limiterMaxKeys*3/4 {
			break
		}
		delete(l.buckets, id)
	}
}

// refill is how long an empty bucket takes to fill again.
func (l *Limiter) refill() time.Duration {
	return time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
}
