package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiterSweepAt is the map size at which idle limiters are dropped. The
// map only ever holds ids of verified tokens, so it is bounded by the
// tokens table; the sweep keeps a long-running server from holding every
// token ever used.
const limiterSweepAt = 1024

// Limiter is the per-token rate limiter: a token bucket per token id.
type Limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time // tests move it

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// NewLimiter allows each token perSecond requests with bursts of burst.
// perSecond 0 turns limiting off.
func NewLimiter(perSecond float64, burst int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, now: time.Now, buckets: map[string]*bucket{}}
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
		if len(l.buckets) >= limiterSweepAt {
			l.sweep(now)
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
	refill := time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
	for id, b := range l.buckets {
		if now.Sub(b.last) > refill {
			delete(l.buckets, id)
		}
	}
}
