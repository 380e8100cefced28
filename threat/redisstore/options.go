package redisstore

import (
	"crypto/tls"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Defaults for Options.
const (
	DefaultDialTimeout      = 50 * time.Millisecond
	DefaultReadTimeout      = 50 * time.Millisecond
	DefaultWriteTimeout     = 50 * time.Millisecond
	DefaultFailureThreshold = 3
	DefaultCooldown         = time.Second
)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// DialTimeout, ReadTimeout and WriteTimeout bound each step of a call to
	// Redis (defaults 50 ms each). A call as a whole, waiting for a pooled
	// connection included, never takes longer than their sum. Timeouts
	// given in the URL's query (dial_timeout=...) take precedence.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the number of connections kept to Redis (go-redis's
	// default, 10 per CPU, when zero).
	PoolSize int
	// FailureThreshold is how many consecutive failed calls open the
	// circuit breaker (default 3).
	FailureThreshold int
	// Cooldown is how often the breaker's background probe PINGs Redis
	// while it is open (default 1 s).
	Cooldown time.Duration
	// TLSConfig replaces the TLS settings of a rediss:// URL, for a private
	// CA or a client certificate. Ignored for redis:// URLs.
	TLSConfig *tls.Config
	// Now is the clock that turns ban TTLs into times (time.Now when nil).
	Now func() time.Time
	// Logger receives the outage and recovery lines (zap.NewNop when nil).
	Logger *zap.Logger
}

func (o Options) withDefaults() Options {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.Cooldown <= 0 {
		o.Cooldown = DefaultCooldown
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// clientOptions completes what redis.ParseURL made of the URL and returns
// the budget of one call: the longest a dial, a write and a read may take
// together. o has its defaults applied.
func (o Options) clientOptions(ro *redis.Options) time.Duration {
	// A URL may set its own timeouts, but not "none" (a negative value to
	// go-redis): every call on the request path must be bounded.
	if ro.DialTimeout <= 0 {
		ro.DialTimeout = o.DialTimeout
	}
	if ro.ReadTimeout <= 0 {
		ro.ReadTimeout = o.ReadTimeout
	}
	if ro.WriteTimeout <= 0 {
		ro.WriteTimeout = o.WriteTimeout
	}
	// One dial attempt per call: go-redis would otherwise redial up to five
	// times with 100 ms pauses, which is the wait this store exists to avoid.
	ro.DialerRetries = 1
	// A retried Add could count a score twice; an outage is the breaker's job.
	ro.MaxRetries = -1
	// Honour the per-call deadline (and the caller's) for the pool wait too.
	ro.ContextTimeoutEnabled = true
	budget := ro.DialTimeout + ro.WriteTimeout + ro.ReadTimeout
	if ro.PoolTimeout <= 0 {
		ro.PoolTimeout = budget
	}
	// Maintenance notifications are a Redis Enterprise feature; asking a
	// plain server about them costs a round trip on every new connection.
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if o.PoolSize > 0 {
		ro.PoolSize = o.PoolSize
	}
	if ro.TLSConfig != nil && o.TLSConfig != nil {
		tc := o.TLSConfig.Clone()
		if tc.ServerName == "" {
			tc.ServerName = ro.TLSConfig.ServerName
		}
		ro.TLSConfig = tc
	}
	return budget
}
