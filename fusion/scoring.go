package fusion

import (
	"bytes"
	"context"
	"crypto/x509"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
)

// storeWarnEvery limits how often a failing store is logged.
const storeWarnEvery = time.Minute

// scorer wraps the configured Store. When the store fails (Redis down), the
// request is never failed: scoring continues in a private in-memory store,
// and bans found there keep applying until the engine goes away.
type scorer struct {
	primary threat.Store
	// clones is primary as a CloneCounter, nil when it is not one: clone
	// detection then counts in fallback, per gateway.
	clones   threat.CloneCounter
	fallback *threat.MemoryStore
	clock    Clock
	log      *zap.Logger

	errors     atomic.Uint64
	failing    atomic.Bool
	everFailed atomic.Bool

	mu         sync.Mutex
	lastWarn   time.Time
	suppressed uint64
}

func newScorer(primary threat.Store, clock Clock, log *zap.Logger) *scorer {
	cc, _ := primary.(threat.CloneCounter)
	return &scorer{primary: primary, clones: cc, fallback: threat.NewMemoryStore(clock), clock: clock, log: log}
}

// bannedCounting is banned, and counts use for clone detection in the same
// call to the store when the store can (threat.CloneCounter). A store that
// cannot, or fails, counts in the fallback: counts are then per gateway.
func (sc *scorer) bannedCounting(ctx context.Context, ns string, s threat.Subject, use threat.CertUse, p threat.ClonePolicy) (time.Time, threat.CloneResult) {
	if use.CertSHA == "" || !p.Enabled() {
		return sc.banned(ctx, ns, s), threat.CloneResult{}
	}
	if sc.clones == nil {
		// The fallback then holds any ban of a certificate the count
		// found over a maximum (use.BanFor): s's bans there count too.
		fb, res, _ := sc.fallback.BannedCounting(ctx, ns, s, use, p)
		if until := sc.banned(ctx, ns, s); until.After(fb) {
			return until, res
		}
		return fb, res
	}
	until, res, err := sc.clones.BannedCounting(ctx, ns, s, use, p)
	if err != nil {
		_, res, _ = sc.fallback.BannedCounting(ctx, ns, threat.Subject{}, use, p)
	}
	return sc.settleBan(ctx, ns, s, until, err), res
}

// banned returns the latest ban expiry for s, or the zero time.
func (sc *scorer) banned(ctx context.Context, ns string, s threat.Subject) time.Time {
	until, err := sc.primary.Banned(ctx, ns, s)
	return sc.settleBan(ctx, ns, s, until, err)
}

// settleBan turns the primary store's answer to a ban check into the ban
// that applies: none when the store failed (noted), and the fallback's ban
// when the store has ever failed and that one lasts longer.
func (sc *scorer) settleBan(ctx context.Context, ns string, s threat.Subject, until time.Time, err error) time.Time {
	if err != nil {
		sc.noteError("banned", err)
		until = time.Time{}
	} else {
		sc.recovered()
	}
	if sc.everFailed.Load() {
		if fb, _ := sc.fallback.Banned(ctx, ns, s); fb.After(until) {
			until = fb
		}
	}
	return until
}

// add scores a failure, in the primary store or, when it fails, the fallback.
func (sc *scorer) add(ctx context.Context, ns string, s threat.Subject, delta int, p threat.Policy) threat.Result {
	res, err := sc.primary.Add(ctx, ns, s, delta, p)
	if err == nil {
		sc.recovered()
		return res
	}
	sc.noteError("add", err)
	res, _ = sc.fallback.Add(ctx, ns, s, delta, p)
	return res
}

func (sc *scorer) recovered() {
	if sc.failing.Load() {
		sc.failing.Store(false)
		sc.log.Info("threat store recovered")
	}
}

// noteError counts a store error and logs it: the first at once, then at
// most once per storeWarnEvery with the number of errors in between.
func (sc *scorer) noteError(op string, err error) {
	sc.errors.Add(1)
	sc.failing.Store(true)
	sc.everFailed.Store(true)
	now := sc.clock()
	sc.mu.Lock()
	if !sc.lastWarn.IsZero() && now.Sub(sc.lastWarn) < storeWarnEvery {
		sc.suppressed++
		sc.mu.Unlock()
		return
	}
	suppressed := sc.suppressed
	sc.lastWarn, sc.suppressed = now, 0
	sc.mu.Unlock()
	sc.log.Warn("threat store failed; scoring in the local fallback store",
		zap.String("op", op), zap.Error(err), zap.Uint64("errors_since_last_warning", suppressed))
}

// scoringSubject is the part of subj that a failure with reason cause scores
// in set: the kinds the set scores (fail_safe.subjects) that the reason's
// table allows (threat.Reason.Subjects), and the certificate only when
// certScorable says the leaf is not one the set's CA issued.
func scoringSubject(set *Set, subj threat.Subject, cause threat.Reason, v *verdict, judged bool, chain [][]byte, now time.Time) threat.Subject {
	s := subj.Only(set.FailSafe.ScoredSubjects() & cause.Subjects())
	if s.CertSHA != "" && !certScorable(set, chain, v, judged, now) {
		s.CertSHA = ""
	}
	return s
}

// certScorable reports whether the leaf of a failed request may be scored:
// only when the engine checked the leaf itself (judged, so not for a chain
// over the caps or a failure the gateway reported) and the set's own
// configuration proves the CA did not issue it. A certificate the CA issued
// is shared by every install of a build, so nothing one client does with it
// (extra or missing chain certificates, a spoofed header, a failed
// handshake, a pin mismatch) may ban it for everyone; revocation is the
// operator's tool for that.
//
// Proof means: the leaf does not parse; or it is self-signed; or it names
// one of the set's CAs or configured intermediates as its issuer and does
// not verify against them (ignoring its validity dates and key usage, and
// whatever else the request presented). A leaf naming any other issuer may
// be a genuine leaf whose intermediate the client left out, so it is not
// scored: an attacker can mint such certificates at will anyway, and its
// address and device still are.
func certScorable(set *Set, chain [][]byte, v *verdict, judged bool, now time.Time) bool {
	if !judged || v == nil || v.trusted || len(chain) == 0 {
		return false
	}
	if v.cert == nil {
		return true // not a certificate anyone was issued
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return true
	}
	if bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
		return true // self-signed: the CA's signature is not on it
	}
	if !namesSetIssuer(set, leaf) {
		return false
	}
	if v.reason == threat.ReasonCertUntrusted {
		// checkCert's chain verification failed with the set's CAs and
		// intermediates and more (the presented certificates): the leaf
		// does not verify against the set's configuration alone either.
		return true
	}
	// Failed before or beside chain verification (a broken extra
	// certificate, a weak signature, a zero serial): verify the leaf
	// against the set's configuration alone.
	at := now
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         set.Roots,
		Intermediates: set.Intermediates,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err != nil
}

// namesSetIssuer reports whether leaf's issuer is the subject of one of the
// set's CAs or configured intermediates.
func namesSetIssuer(set *Set, leaf *x509.Certificate) bool {
	for _, c := range set.CACerts {
		if bytes.Equal(leaf.RawIssuer, c.RawSubject) {
			return true
		}
	}
	for _, c := range set.IntermediateCerts {
		if bytes.Equal(leaf.RawIssuer, c.RawSubject) {
			return true
		}
	}
	return false
}

// addrCacheSlots is the size of the address key cache: enough for the
// clients a gateway sees within seconds; a miss only costs an allocation.
const addrCacheSlots = 1024

// addrCache remembers the scoring key (threat.AddressKey) of recent client
// addresses that need formatting, IPv6 above all, so that the good path of a
// returning client allocates nothing. It is direct-mapped: a slot holds the
// last address hashed to it, so its size is fixed whatever clients send.
type addrCache struct {
	seed  maphash.Seed
	slots [addrCacheSlots]atomic.Pointer[addrEntry]
}

type addrEntry struct {
	raw, key string
	v4, v6   int
}

func newAddrCache() *addrCache { return &addrCache{seed: maphash.MakeSeed()} }

// key returns threat.AddressKey(raw, v4, v6) (the policy's prefixes).
func (c *addrCache) key(raw string, p threat.Policy) string {
	if raw == "" {
		return ""
	}
	v4, v6 := p.Prefixes()
	if v4 == 32 {
		// The common case: a canonical IPv4 address is its own key.
		if a, err := netip.ParseAddr(raw); err == nil && a.Is4() {
			return raw
		}
	}
	slot := &c.slots[maphash.String(c.seed, raw)%addrCacheSlots]
	if e := slot.Load(); e != nil && e.raw == raw && e.v4 == v4 && e.v6 == v6 {
		return e.key
	}
	k := threat.AddressKey(raw, v4, v6)
	// Clone: raw may be a slice of a large request buffer, and k may be raw.
	r := strings.Clone(raw)
	if k == raw {
		k = r
	}
	slot.Store(&addrEntry{raw: r, key: k, v4: v4, v6: v6})
	return k
}
