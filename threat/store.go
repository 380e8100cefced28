package threat

import (
	"context"
	"time"
)

// Subject identifies a client for scoring and bans. Each non-empty field is
// scored and banned on its own, so a bot that rotates certificates is still
// caught by its IP, and one that rotates IPs by its device id or certificate.
// A fixed struct rather than a slice keeps the hot path allocation free.
type Subject struct {
	IP       string
	DeviceID string
	CertSHA  string
}

// Policy is a fusion set's fail-safe enforcement: once a subject's score within
// Window reaches Threshold, it is banned for BanFor.
type Policy struct {
	Threshold int
	Window    time.Duration
	BanFor    time.Duration
}

// Enabled reports whether fail-safe enforcement is configured.
func (p Policy) Enabled() bool { return p.Threshold > 0 }

// Result is the outcome of Store.Add.
type Result struct {
	// Total is the highest running score among the subject's keys.
	Total int
	// BannedUntil is non-zero when this Add crossed the threshold (or a ban
	// was already active) for any of the subject's keys.
	BannedUntil time.Time
}

// Store holds running scores and bans. ns namespaces keys per fusion set.
// Implementations must be safe for concurrent use; Add must be atomic per key
// (add-and-read and ban-with-expiry in one step) so that gateways sharing a
// store agree on who is banned.
type Store interface {
	// Banned returns the latest ban expiry among the subject's keys, or the
	// zero time when none is banned.
	Banned(ctx context.Context, ns string, s Subject) (time.Time, error)
	// Add adds delta to the score of each of the subject's keys within the
	// policy window and bans every key whose total reaches the threshold.
	Add(ctx context.Context, ns string, s Subject, delta int, p Policy) (Result, error)
	// Close releases the store's resources.
	Close() error
}

// Sink delivers events somewhere (a log, a file, a webhook). Deliver is called
// from the dispatcher's goroutine only, never from a request; it may block.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, batch []*Event) error
	Close() error
}
