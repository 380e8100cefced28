package fusion

import (
	"context"
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
	primary  threat.Store
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
	return &scorer{primary: primary, fallback: threat.NewMemoryStore(clock), clock: clock, log: log}
}

// banned returns the latest ban expiry for s, or the zero time.
func (sc *scorer) banned(ctx context.Context, ns string, s threat.Subject) time.Time {
	until, err := sc.primary.Banned(ctx, ns, s)
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
