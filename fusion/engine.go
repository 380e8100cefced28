package fusion

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/safetext"
	"github.com/mccgate/mcc/threat"
)

// DefaultCacheSize is the default number of cached verdicts per fusion set.
const DefaultCacheSize = 10000

// maxDeviceValue caps a device header value copied into events and store keys.
const maxDeviceValue = 256

// Options configures an Engine.
type Options struct {
	// Store holds scores and bans; nil means a private in-memory store.
	Store threat.Store
	// Pipeline receives events of sets with threat_events on; nil means
	// events are built but not emitted anywhere.
	Pipeline *threat.Pipeline
	// Clock is the time source; nil means time.Now.
	Clock Clock
	// Logger; nil means no logging.
	Logger *zap.Logger
	// CacheSize bounds the verdict cache of each fusion set (default 10000).
	CacheSize int
	// Gateway and Node are the defaults for Request.Gateway and Request.Node.
	Gateway, Node string
}

// Engine evaluates requests against fusion sets. It is safe for concurrent
// use; Update swaps the configuration atomically.
type Engine struct {
	opts     Options
	clock    Clock
	log      *zap.Logger
	pipeline *threat.Pipeline
	scores   *scorer
	addrs    *addrCache
	state    atomic.Pointer[engineState]

	cacheHits   hitCounter
	cacheMisses atomic.Uint64
	bans        atomic.Uint64 // see countBan
}

// engineState is one configuration with its per-set caches. Swapping it
// drops every cached verdict of the previous configuration.
type engineState struct {
	cfg  *Config
	sets map[string]*setState
}

type setState struct {
	set   *Set
	cache *verdictCache
}

// NewEngine returns an engine serving cfg.
func NewEngine(cfg *Config, opts Options) (*Engine, error) {
	if cfg == nil {
		return nil, errors.New("fusion: NewEngine: nil config")
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if isNil(opts.Store) {
		opts.Store = threat.NewMemoryStore(opts.Clock)
	}
	e := &Engine{
		opts:     opts,
		clock:    opts.Clock,
		log:      opts.Logger,
		pipeline: opts.Pipeline,
		scores:   newScorer(opts.Store, opts.Clock, opts.Logger),
		addrs:    newAddrCache(),
	}
	e.Update(cfg)
	return e, nil
}

// isNil reports whether a Store is nil, including a typed nil pointer.
func isNil(s threat.Store) bool {
	if s == nil {
		return true
	}
	v := reflect.ValueOf(s)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// Update swaps in a new configuration. Cached verdicts of the old one are
// dropped with it.
func (e *Engine) Update(cfg *Config) {
	if cfg == nil {
		return
	}
	st := &engineState{cfg: cfg, sets: make(map[string]*setState, len(cfg.Sets))}
	for id, s := range cfg.Sets {
		st.sets[id] = &setState{set: s, cache: newSetCache(s, e.opts.CacheSize)}
	}
	e.state.Store(st)
}

// Config returns the configuration being served.
func (e *Engine) Config() *Config { return e.state.Load().cfg }

// Set returns the compiled fusion set with that id.
func (e *Engine) Set(id string) (*Set, bool) {
	ss, ok := e.state.Load().sets[id]
	if !ok {
		return nil, false
	}
	return ss.set, true
}

// Evaluate decides one request for the fusion set setID. It never panics:
// a bug on some input blocks the request with CERT_MALFORMED instead.
func (e *Engine) Evaluate(ctx context.Context, setID string, req *Request) (d Decision) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("fusion: evaluation panicked; blocking the request",
				zap.String("fusion_set", setID), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			d = Decision{Action: Block, Status: DefaultStatus, Message: DefaultMessage, Reason: threat.ReasonCertMalformed, FusionSet: setID, Mode: threat.ModeDefense}
		}
	}()
	if req == nil {
		req = &Request{}
	}
	ss := e.state.Load().sets[setID]
	if ss == nil {
		return e.configError(setID, req)
	}
	set := ss.set
	now := e.clock()

	chain := req.PeerCertificates
	if len(chain) == 0 && len(req.VerifiedChains) > 0 {
		chain = rawChain(req.VerifiedChains[0])
	}

	// The certificate's hash is part of the client's identity for bans, so
	// the cheap steps (caps, cache lookup, hash) run before the ban check;
	// parsing and chain verification run only for clients not banned.
	var v *verdict
	var reason threat.Reason
	var data map[string]any
	hit := false
	// judged is set when the failure comes from the engine's own check of
	// the leaf: only then may the certificate be scored (scoringSubject).
	judged := false
	certSHA := ""
	if len(chain) == 0 {
		reason, data = threat.ReasonNoClientCert, map[string]any{"error": "no client certificate presented"}
	} else if reason, data = checkShape(set, chain); reason == threat.ReasonNone {
		if c := ss.cache.get(chain[0]); c != nil && c.fresh(set, chain, now) {
			v, hit = c, true
			e.cacheHits.add()
			certSHA = v.certSHA
		} else {
			certSHA = sha256Hex(chain[0])
		}
	} else {
		certSHA = sha256Hex(chain[0])
		v = describeLeaf(chain[0]) // for the event, when the leaf parses
	}

	// Only the kinds the set scores are looked up: a kind it does not
	// score can hold no ban of this set. Addresses are keyed by prefix.
	kinds := set.FailSafe.ScoredSubjects()
	subj := threat.Subject{CertSHA: certSHA}
	if kinds.Has(threat.SubjectAddress) {
		subj.IP = e.addrs.key(req.ClientIP, set.FailSafe)
	}
	if kinds.Has(threat.SubjectDevice) {
		subj.DeviceID = deviceValue(req.Header, set.deviceIDHeader)
	}
	subj = subj.Only(kinds)
	// Clone detection counts a use of a certificate that verified in the
	// same store call as the ban check: on a cached good verdict here, on
	// a miss below once the chain has verified (the rare path, which
	// verification already makes a hundred times dearer).
	var use threat.CertUse
	if hit && v.reason == threat.ReasonNone && req.Reason == threat.ReasonNone && set.Installs.acceptsKind(req.Purpose, v.kind()) {
		use = e.certUse(set, req, subj, certSHA, v, now)
	}
	until, clone := e.scores.bannedCounting(ctx, set.ID, subj, use, set.Clone)
	if !until.IsZero() {
		return e.failure(ctx, set, req, subj, threat.ReasonFailSafeActive,
			map[string]any{"error": "client is blocked by fail-safe enforcement", "until": until.UTC().Format(time.RFC3339)}, v, now, hit)
	}

	switch {
	case req.Reason != threat.ReasonNone:
		reason, data = req.Reason, req.ReasonData
		if v == nil && len(chain) > 0 {
			v = describeLeaf(chain[0])
		}
	case reason != threat.ReasonNone:
		// no certificate, or caps exceeded
	case v == nil:
		e.cacheMisses.Add(1)
		v = checkCert(set, chain, req.VerifiedChains, now)
		// Only chains that verified are cached, with hashes of the
		// certificates after the leaf, within the set's byte budget.
		ss.cache.putChain(chain, v)
		reason, data = v.reason, v.data
		judged = true
	default:
		reason, data = v.reason, v.data
		judged = true
	}
	if reason == threat.ReasonNone && v != nil {
		reason, data = checkKind(set, req.Purpose, v)
	}
	if reason == threat.ReasonNone {
		if use.CertSHA == "" && set.Clone.Enabled() {
			use = e.certUse(set, req, subj, certSHA, v, now)
			_, clone = e.scores.bannedCounting(ctx, set.ID, threat.Subject{}, use, set.Clone)
		}
		if block := use.BanFor > 0 && clone.Over(set.Clone); block || clone.Report {
			return e.cloneDecision(ctx, set, req, subj, clone, v, now, hit, block)
		}
		d = Decision{Action: Allow, FusionSet: set.ID, Mode: set.Mode, CacheHit: hit}
		if v != nil {
			d.Cert = v.cert
		}
		return d
	}
	// Scored by the cause, before a handshake failure wraps it.
	scored := scoringSubject(set, subj, reason, v, judged, chain, now)
	// An expired CRL (CONFIG_ERROR) is the operator's failure: it stays
	// CONFIG_ERROR (score 0) rather than becoming a scored HANDSHAKE_FAILED.
	if req.Handshake && reason != threat.ReasonHandshakeFailed && reason != threat.ReasonConfigError {
		cause := reason
		data = copyData(data, 1)
		data["cause"] = string(cause)
		reason = threat.ReasonHandshakeFailed
	}
	return e.failure(ctx, set, req, scored, reason, data, v, now, hit)
}

// failure scores a failed request (the parts of subj that are not empty:
// the caller has applied scoringSubject), builds its event, emits it when
// the set has events on, and decides by mode and fail-safe state.
func (e *Engine) failure(ctx context.Context, set *Set, req *Request, subj threat.Subject, reason threat.Reason, data map[string]any, v *verdict, now time.Time, hit bool) Decision {
	score, total := 0, 0
	enforce := reason == threat.ReasonFailSafeActive
	if !enforce {
		score, total, enforce = e.score(ctx, set, subj, reason)
	}
	block := set.Mode == threat.ModeDefense || enforce
	ev := e.buildEvent(set, req, reason, data, v, now, score, total, enforce, block)
	d := Decision{
		Reason:    reason,
		FusionSet: set.ID,
		Mode:      set.Mode,
		Event:     ev,
		CacheHit:  hit,
	}
	if v != nil {
		d.Cert = v.cert
	}
	if block {
		d.Action, d.Status, d.Message = Block, set.Status, set.Message
	}
	if set.Events && e.pipeline != nil {
		e.pipeline.Emit(ev)
		d.Emitted = true
	}
	return d
}

// score adds reason's score to subj's totals when the set has fail-safe
// enforcement, and returns the score, the highest total and whether a ban
// is now active for subj.
func (e *Engine) score(ctx context.Context, set *Set, subj threat.Subject, reason threat.Reason) (score, total int, banned bool) {
	score = set.Score(reason)
	total = score
	if set.FailSafe.Enabled() && !subj.Empty() {
		res := e.scores.add(ctx, set.ID, subj, score, set.FailSafe)
		e.countBan(score, res, set.FailSafe)
		total = max(total, res.Total)
		banned = !res.BannedUntil.IsZero()
	}
	return score, total, banned
}

// configError is the answer for an unknown fusion set: always a block, and
// an event that is built (for logs) but not emitted.
func (e *Engine) configError(setID string, req *Request) Decision {
	now := e.clock()
	ev := &threat.Event{
		Schema:     threat.SchemaID,
		ID:         threat.NewEventID(),
		Time:       now.UTC(),
		Name:       threat.FeatureName,
		ReasonCode: threat.ReasonConfigError,
		ReasonData: map[string]any{"error": fmt.Sprintf("unknown fusion set %q", truncate(setID, 64))},
		Ref:        "mcc/" + truncate(setID, 64) + "/" + string(threat.ReasonConfigError),
		Message:    DefaultMessage,
		ExternalID: externalID(req),
		FusionSet:  setID,
		Mode:       threat.ModeDefense,
		Action:     threat.ActionBlocked,
		Gateway:    firstNonEmpty(req.Gateway, e.opts.Gateway),
		Node:       firstNonEmpty(req.Node, e.opts.Node),
		ClientIP:   req.ClientIP,
		SNI:        req.SNI,
		Host:       req.Host,
		Method:     req.Method,
		Path:       req.Path,
	}
	return Decision{Action: Block, Status: DefaultStatus, Message: DefaultMessage, Reason: threat.ReasonConfigError,
		FusionSet: setID, Mode: threat.ModeDefense, Event: ev}
}

func deviceValue(h http.Header, name string) string {
	if name == "" || h == nil {
		return ""
	}
	return eventText(h.Get(name), maxDeviceValue)
}

// eventText makes a value the client sent fit for an event and a store
// key (safetext.Clean). mcc server refuses a batch in which an indexed
// field is not safetext.Printable or is over 256 bytes, and a webhook
// sink drops a refused batch for good: one client's tab in a device
// header would lose every other event of the batch.
func eventText(s string, max int) string { return safetext.Clean(s, max) }

func rawChain(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, 0, len(chain))
	for _, c := range chain {
		if c != nil {
			out = append(out, c.Raw)
		}
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func copyData(m map[string]any, extra int) map[string]any {
	out := make(map[string]any, len(m)+extra)
	for k, v := range m {
		out[k] = v
	}
	return out
}
