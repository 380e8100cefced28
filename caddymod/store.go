package caddymod

import "github.com/mccgate/mcc/threat"

// meteredStore is the store the engine scores in. It no longer counts
// anything: the engine counts store errors and bans itself
// (fusion.EngineStats), for both gateways alike, instead of this wrapper
// re-deriving the ban rule. It remains only as the type state.go names;
// storeEntry can hold the threat.Store directly.
type meteredStore struct {
	threat.Store
}

func newMeteredStore(s threat.Store) *meteredStore { return &meteredStore{Store: s} }

// Degraded passes on the store's own health (threat.HealthReporter), which
// the embedding would hide from the engine.
func (m *meteredStore) Degraded() bool {
	h, ok := m.Store.(threat.HealthReporter)
	return ok && h.Degraded()
}
