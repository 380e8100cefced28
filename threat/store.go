package threat

import (
	"context"
	"time"
)

// Subject identifies a client for scoring and bans. Each non-empty field is
// scored and banned on its own, so a bot that rotates certificates is still
// caught by its IP, and one that rotates IPs by its device id or certificate.
// A fixed struct rather than a slice keeps the hot path allocation free.
//
// IP is the client address as the engine scores it (AddressKey): an address,
// or a prefix such as "2001:db8:1:2::/64". Which parts a failure fills in is
// decided by the reason (Reason.Subjects) and the fusion set
// (Policy.Subjects); a store scores whatever parts are not empty.
type Subject struct {
	IP       string
	DeviceID string
	CertSHA  string
}

// Policy is a fusion set's fail-safe enforcement: once a subject's score within
// Window reaches Threshold, it is banned for BanFor.
//
// Subjects, IPv4Prefix and IPv6Prefix say how the fusion engine builds the
// subjects it scores (which kinds, and how client addresses aggregate);
// stores ignore them. Their zero values mean the defaults.
type Policy struct {
	Threshold int
	Window    time.Duration
	BanFor    time.Duration
	// Subjects are the kinds the set scores and bans (zero: DefaultSubjects).
	Subjects SubjectSet
	// IPv4Prefix and IPv6Prefix are the prefix lengths client addresses
	// are scored by (zero: DefaultIPv4Prefix, DefaultIPv6Prefix).
	IPv4Prefix, IPv6Prefix int
}

// Defaults of the Policy fields that shape subjects.
const (
	// DefaultSubjects scores the address, the device id and (per the
	// reason table) the certificate.
	DefaultSubjects = AllSubjects
	// DefaultIPv4Prefix scores each IPv4 address on its own.
	DefaultIPv4Prefix = 32
	// DefaultIPv6Prefix scores an IPv6 client by its /64: one subscriber
	// or LAN, which a client can rotate through at will.
	DefaultIPv6Prefix = 64
)

// ScoredSubjects returns p.Subjects, or DefaultSubjects when unset.
func (p Policy) ScoredSubjects() SubjectSet {
	if p.Subjects == 0 {
		return DefaultSubjects
	}
	return p.Subjects
}

// Prefixes returns the IPv4 and IPv6 prefix lengths, defaults applied.
func (p Policy) Prefixes() (v4, v6 int) {
	v4, v6 = p.IPv4Prefix, p.IPv6Prefix
	if v4 <= 0 || v4 > 32 {
		v4 = DefaultIPv4Prefix
	}
	if v6 <= 0 || v6 > 128 {
		v6 = DefaultIPv6Prefix
	}
	return v4, v6
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

// CloneCounter is implemented by stores that count certificate uses for
// clone detection (ClonePolicy) in the same call as the ban check, so that
// the good path of a request still makes one call to the store: one round
// trip to a shared one. Both stores of this module implement it; the engine
// counts in its local memory store for one that does not.
type CloneCounter interface {
	// BannedCounting is Banned for s and, when use.CertSHA is set and p is
	// enabled, counts use (its address and device id) against the
	// certificate in p's window and returns the distinct counts, with
	// Report set for the one use that first raised a report level in the
	// window (ClonePolicy.Levels), across every gateway sharing the store.
	// With nothing to count it returns a zero CloneResult.
	BannedCounting(ctx context.Context, ns string, s Subject, use CertUse, p ClonePolicy) (time.Time, CloneResult, error)
}

// HealthReporter is implemented by stores that know when they cannot serve
// before a call fails (a Redis store whose circuit breaker is open). The
// engine reports it as its store fallback state (fusion.EngineStats), which
// both gateways export. It is optional so that Store stays what the request
// path needs.
type HealthReporter interface {
	// Degraded reports whether calls are being refused or failing now.
	Degraded() bool
}

// Ban is one live ban, as listed for operators.
type Ban struct {
	// Set is the fusion set (the store namespace).
	Set string
	// Kind and Value name the banned subject: an address or prefix
	// ("192.0.2.7", "2001:db8:1:2::/64"), a device id, or a certificate's
	// SHA-256 (a value longer than a store's key limit may be listed by its
	// digest).
	Kind  SubjectKind
	Value string
	// Until is when the ban ends.
	Until time.Time
	// Score is the subject's running score in its window (0 when unknown).
	Score int
}

// BanAdmin is implemented by stores that let an operator see and lift bans
// (`mcc ban list|lift`). It is a separate interface so that Store stays
// what the request path needs.
type BanAdmin interface {
	// Bans lists the live bans of fusion set ns, or of every set when ns
	// is "", sorted by set, kind and value.
	Bans(ctx context.Context, ns string) ([]Ban, error)
	// Lift ends the ban of one subject in ns and clears its score, so the
	// next failure does not ban it again at once. It returns the bans
	// lifted: for an address, every banned address or prefix that contains
	// value (value may be an address or a prefix); for a device id or a
	// certificate, the exact value. Lifting what is not banned is not an
	// error; it returns nothing.
	Lift(ctx context.Context, ns string, kind SubjectKind, value string) ([]Ban, error)
}

// Sink delivers events somewhere (a log, a file, a webhook). Deliver is called
// from the dispatcher's goroutine only, never from a request; it may block.
type Sink interface {
	Name() string
	Deliver(ctx context.Context, batch []*Event) error
	Close() error
}
