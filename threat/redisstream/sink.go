// Package redisstream is a threat.Sink that appends events to a Redis
// Stream, for consumers that read with XREAD or consumer groups.
//
// Each event is one stream entry with two fields: "id", the event id (so a
// consumer can drop an entry it has seen), and "event", the event JSON
// (schema mcc.threat-event/v1). The stream is capped with XADD MAXLEN ~, so
// Redis trims whole macro nodes and the length stays between MaxLen and
// MaxLen plus one node (stream-node-max-entries, 100 by default). A batch is
// one pipelined round trip.
package redisstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
)

// Field names of a stream entry.
const (
	FieldID    = "id"
	FieldEvent = "event"
)

// DefaultStream is the stream written when the configuration names none.
const DefaultStream = "mcc:events"

// DefaultTimeout bounds each network step when the URL sets none. The sink
// runs off the request path, so it can afford to wait longer than the store.
const DefaultTimeout = 5 * time.Second

// Sink is a threat.Sink writing to one Redis Stream.
type Sink struct {
	client *redis.Client
	stream string
	maxLen int64
	log    *zap.Logger
}

var _ threat.Sink = (*Sink)(nil)

// New returns a sink that XADDs to stream at rawURL (redis:// or rediss://,
// go-redis's URL syntax), keeping about maxLen entries (no cap when
// maxLen <= 0). A server that answers with an error (a wrong password) or
// whose TLS certificate does not verify makes New fail; one that does not answer is logged and the sink is returned
// anyway, so that a gateway starts while Redis is down (its batches fail and
// are counted by the pipeline until Redis is back).
func New(ctx context.Context, rawURL, stream string, maxLen int64, logger *zap.Logger) (*Sink, error) {
	if stream == "" {
		return nil, errors.New("redis stream sink: no stream name")
	}
	ro, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if ro.DialTimeout <= 0 {
		ro.DialTimeout = DefaultTimeout
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = DefaultTimeout
	}
	// A retried pipeline could add a batch twice; the pipeline above counts
	// a failed batch instead.
	ro.MaxRetries = -1
	ro.ContextTimeoutEnabled = true
	if logger == nil {
		logger = zap.NewNop()
	}
	c := redis.NewClient(ro)
	if err := c.Ping(ctx).Err(); err != nil {
		var re redis.Error
		var cve *tls.CertificateVerificationError
		if errors.As(err, &re) || errors.As(err, &cve) || ctx.Err() != nil {
			_ = c.Close()
			return nil, fmt.Errorf("redis stream sink %s: %w", ro.Addr, err)
		}
		logger.Warn("redis stream sink: Redis does not answer yet; events fail until it does",
			zap.String("redis", ro.Addr), zap.String("stream", stream), zap.Error(err))
	}
	return &Sink{client: c, stream: stream, maxLen: maxLen, log: logger}, nil
}

// CheckURL reports whether rawURL is a usable redis:// or rediss:// URL,
// without connecting. The error never contains the URL's password.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

func parseURL(rawURL string) (*redis.Options, error) {
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("invalid URL: %w", ue.Err) // the URL may hold a password
		}
		// go-redis's own errors name the scheme, path or option, never
		// the password.
		return nil, fmt.Errorf("redis stream sink: %w", err)
	}
	return ro, nil
}

// Name identifies the sink in pipeline stats.
func (s *Sink) Name() string { return "redis_stream:" + s.stream }

// Deliver appends the batch in order, in one pipelined round trip. An event
// that cannot be encoded is logged and skipped; it would fail again.
func (s *Sink) Deliver(ctx context.Context, batch []*threat.Event) error {
	if len(batch) == 0 {
		return nil
	}
	pipe := s.client.Pipeline()
	n := 0
	for _, e := range batch {
		b, err := e.MarshalJSON() // already compact: json.Marshal would compact it again
		if err != nil {
			s.log.Error("redis stream sink: dropping an event that does not encode", zap.String("event_id", e.ID), zap.Error(err))
			continue
		}
		args := &redis.XAddArgs{Stream: s.stream, Values: []any{FieldID, e.ID, FieldEvent, b}}
		if s.maxLen > 0 {
			args.MaxLen, args.Approx = s.maxLen, true
		}
		pipe.XAdd(ctx, args)
		n++
	}
	if n == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis stream sink %s: adding %d events: %w", s.stream, n, err)
	}
	return nil
}

// Close closes the connections.
func (s *Sink) Close() error { return s.client.Close() }
