package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
)

// Store is a threat.Store in Redis. It is safe for concurrent use.
type Store struct {
	client *redis.Client
	add    *redis.Script
	banned *redis.Script
	// banCount is banned with clone counting (clone.go); hashKey is this
	// store's candidate for a set's clone hashing key.
	banCount *redis.Script
	hashKey  string
	now      func() time.Time
	budget   time.Duration
	br       *breaker

	closeOnce sync.Once
	closeErr  error
}

var _ threat.Store = (*Store)(nil)

// New connects to the Redis at rawURL: redis://[[user]:password@]host:port/db,
// or rediss:// for TLS (go-redis's URL syntax, query options included).
//
// A server that answers with an error (a wrong password, a database that does
// not exist) or whose TLS certificate does not verify is a configuration
// mistake and New fails. A server that does not
// answer is an outage: New returns a store whose breaker is already open, so
// that a gateway starts (and scores locally) while Redis is down.
func New(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis store: %w", redactURLError(err))
	}
	opts = opts.withDefaults()
	budget := opts.clientOptions(ro)
	log := opts.Logger.With(zap.String("redis", ro.Addr), zap.Int("db", ro.DB))

	client := redis.NewClient(ro)
	s := &Store{
		client:   client,
		add:      redis.NewScript(addSource),
		banned:   redis.NewScript(bannedSource),
		banCount: redis.NewScript(bannedCountingSource),
		hashKey:  newHashKey(),
		now:      opts.Now,
		budget:   budget,
	}
	s.br = newBreaker(opts.FailureThreshold, opts.Cooldown, budget, func(ctx context.Context) error {
		// Knock first with a bare TCP dial: while nothing listens, this
		// keeps go-redis from logging a failed dial on every probe.
		var d net.Dialer
		c, err := d.DialContext(ctx, ro.Network, ro.Addr)
		if err != nil {
			return err
		}
		_ = c.Close()
		return client.Ping(ctx).Err()
	}, log)

	pctx, cancel := context.WithTimeout(ctx, budget)
	err = client.Ping(pctx).Err()
	if err == nil {
		// Cache the scripts now so that the first requests need no EVAL.
		err = errors.Join(s.add.Load(pctx, client).Err(), s.banned.Load(pctx, client).Err(), s.banCount.Load(pctx, client).Err())
	}
	cancel()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		_ = client.Close()
		return nil, fmt.Errorf("redis store %s: %w", ro.Addr, ctx.Err())
	case misconfigured(err):
		_ = client.Close()
		return nil, fmt.Errorf("redis store %s: %w", ro.Addr, err)
	default:
		s.br.errs.Add(1)
		s.br.trip(err)
	}
	return s, nil
}

// Add implements threat.Store in one round trip: see doc.go.
func (s *Store) Add(ctx context.Context, ns string, sub threat.Subject, delta int, p threat.Policy) (threat.Result, error) {
	keys := addKeys(ns, sub)
	if len(keys) == 0 {
		return threat.Result{}, nil
	}
	if !s.br.allow() {
		return threat.Result{}, ErrUnavailable
	}
	window := p.Window
	if window <= 0 {
		window = threat.DefaultWindow
	}
	threshold := 0
	if p.Enabled() {
		threshold = p.Threshold
	}
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	vals, err := s.add.Run(ctx, s.client, keys, delta, threshold, millis(window), millis(p.BanFor)).Int64Slice()
	cancel()
	s.br.record(err)
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("unexpected reply %v", vals)
	}
	if err != nil {
		return threat.Result{}, fmt.Errorf("redis store: scoring in %q: %w", ns, err)
	}
	res := threat.Result{Total: int(vals[0])}
	if vals[1] > 0 {
		res.BannedUntil = s.now().Add(time.Duration(vals[1]) * time.Millisecond)
	}
	return res, nil
}

// Banned implements threat.Store in one round trip.
func (s *Store) Banned(ctx context.Context, ns string, sub threat.Subject) (time.Time, error) {
	keys := banKeys(ns, sub)
	if len(keys) == 0 {
		return time.Time{}, nil
	}
	if !s.br.allow() {
		return time.Time{}, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	ms, err := s.banned.Run(ctx, s.client, keys).Int64()
	cancel()
	s.br.record(err)
	if err != nil {
		return time.Time{}, fmt.Errorf("redis store: checking bans in %q: %w", ns, err)
	}
	if ms <= 0 {
		return time.Time{}, nil
	}
	return s.now().Add(time.Duration(ms) * time.Millisecond), nil
}

var _ threat.HealthReporter = (*Store)(nil)

// Stats returns the breaker state and counters.
func (s *Store) Stats() Stats { return s.br.stats() }

// Degraded reports whether the circuit breaker is open (threat.HealthReporter):
// calls are refused without touching Redis until a probe succeeds.
func (s *Store) Degraded() bool { return !s.br.stats().Up }

// Close stops the breaker's probe and closes the connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.br.stop()
		s.closeErr = s.client.Close()
	})
	return s.closeErr
}

// millis is d in whole milliseconds, at least 1 for a positive d (Redis
// expiries are in ms, and 0 would mean "no expiry" to the script).
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(d.Milliseconds(), 1)
}

// misconfigured reports whether err, met on first contact, is a mistake in
// the settings rather than an outage: an error reply (a wrong password, a
// database that does not exist) or a TLS failure (a certificate that does
// not verify, TLS to a plain port).
func misconfigured(err error) bool {
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	return !isOutage(err) || errors.As(err, &cve) || errors.As(err, &rhe)
}

// redactURLError drops the URL from a parse error: it may hold a password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("invalid URL: %w", ue.Err)
	}
	return err
}
