package fusion

import "github.com/mccgate/mcc/threat"

// EngineStats are the engine's counters, what both gateways export as
// metrics (adapter.Metrics; docs/metrics.md).
type EngineStats struct {
	CacheHits, CacheMisses uint64
	CacheEntries           int
	// CacheBytes is the accounted size of the verdict caches (each set's
	// bounded by its cache.max_bytes).
	CacheBytes int64
	// StoreErrors counts failed calls to the configured Store.
	StoreErrors uint64
	// StoreFallback is true while scoring runs on the engine's private
	// in-memory store: the last call to the configured Store failed, or the
	// store reports itself down (threat.HealthReporter, such as a Redis
	// store whose circuit breaker is open) before any call fails.
	StoreFallback bool
	// Bans counts the fail-safe bans this engine started: scoring a failure
	// took a subject's running score from below its set's threshold to at
	// or above it.
	Bans uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() EngineStats {
	st := EngineStats{
		CacheHits:     e.cacheHits.load(),
		CacheMisses:   e.cacheMisses.Load(),
		StoreErrors:   e.scores.errors.Load(),
		StoreFallback: e.scores.failing.Load() || storeDegraded(e.opts.Store),
		Bans:          e.bans.Load(),
	}
	for _, ss := range e.state.Load().sets {
		st.CacheEntries += ss.cache.len()
		st.CacheBytes += ss.cache.size()
	}
	return st
}

// countBan counts a ban when the Add that scored delta took the running
// total from below the threshold to at or above it: the Add that started
// the ban, whichever store (configured or fallback) it ran in. Later Adds
// while the ban lasts find the total already at the threshold.
func (e *Engine) countBan(delta int, res threat.Result, p threat.Policy) {
	if p.Enabled() && delta > 0 && res.Total >= p.Threshold && res.Total-delta < p.Threshold {
		e.bans.Add(1)
	}
}

// storeDegraded asks a store that can tell whether it is down.
func storeDegraded(s threat.Store) bool {
	h, ok := s.(threat.HealthReporter)
	return ok && h.Degraded()
}
