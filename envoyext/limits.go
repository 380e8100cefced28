package envoyext

import (
	"time"
	"unicode/utf8"

	"github.com/mccgate/mcc/adapter"
)

// Limits on what one gRPC peer can make mcc authz hold, parse or write.
// Envoy itself never comes near them; they bound what a hostile or broken
// client costs. Each is documented in the README's Security section.
const (
	// DefaultMaxRecvMsgSize is the largest gRPC message accepted (a
	// CheckRequest or one StreamAccessLogsMessage). Envoy's request headers
	// are capped at 60 KiB by default and its gRPC access logger flushes
	// every 16 KiB (buffer_size_bytes), so 1 MiB leaves room for both. A
	// larger message is refused by gRPC (RESOURCE_EXHAUSTED) before it is
	// read into memory.
	DefaultMaxRecvMsgSize = 1 << 20

	// DefaultMaxXFCCBytes caps x-forwarded-client-cert before it is parsed
	// or cached (the shared adapter rule: a chain of a few certificates is
	// a few KiB). A longer value is CERT_MALFORMED.
	DefaultMaxXFCCBytes = adapter.DefaultMaxCertHeaderBytes

	// DefaultMaxCertificateBytes caps attributes.source.certificate (the
	// leaf as Envoy's URL-encoded PEM) and each certificate of an XFCC
	// chain (DER). Real client certificates are 1-3 KiB. A larger one is
	// CERT_MALFORMED, neither decoded nor cached.
	DefaultMaxCertificateBytes = 16 << 10

	// DefaultCertCacheBytes bounds the decoded-certificate cache by the
	// bytes it holds (DER plus bookkeeping), not by its number of entries.
	DefaultCertCacheBytes = 8 << 20

	// DefaultHandshakeFailureRate and DefaultHandshakeFailureBurst are the
	// token bucket of each access-log stream: at most Burst handshake
	// failures are scored at once, then Rate per second. Failures over the
	// budget are counted (mcc_authz_handshake_failures_dropped_total) and
	// neither scored nor turned into events or log lines, so one message
	// cannot make thousands of events.
	DefaultHandshakeFailureRate  = 50.0
	DefaultHandshakeFailureBurst = 100
)

// Lengths to which strings copied from Envoy into events, metrics labels and
// log lines are cut (in bytes, at a UTF-8 boundary, with "..." appended).
const (
	maxNameLen    = 128  // log_name, node id, custom-tag fusion set, method
	maxStringLen  = 256  // SNI, host, addresses, JA3, request id
	maxPathLen    = 1024 // request path
	maxFailureLen = 512  // downstream_transport_failure_reason
)

// clip cuts s to at most n bytes, at a rune boundary, marking the cut with
// "...". Strings from Envoy (or from whoever speaks gRPC to us) are copied
// into events and logs only through clip, so their size is bounded there.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// tokenBucket is a small rate limiter for one access-log stream. It is used
// from the stream's goroutine only, so it needs no lock.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newTokenBucket(rate float64, burst int, now func() time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// allow takes one token if there is one.
func (b *tokenBucket) allow() bool {
	t := b.now()
	if el := t.Sub(b.last).Seconds(); el > 0 {
		b.tokens += el * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = t
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
