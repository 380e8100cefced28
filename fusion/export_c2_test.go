package fusion

// CacheBytesForTest returns the accounted size of set id's verdict cache,
// for the external tests.
func CacheBytesForTest(e *Engine, id string) int64 {
	ss := e.state.Load().sets[id]
	if ss == nil {
		return -1
	}
	return ss.cache.size()
}
