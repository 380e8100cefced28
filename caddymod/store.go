package caddymod

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/threat"
)

// meteredStore counts what the engine's store calls tell about bans and
// failures, for caddy_mcc_fail_safe_bans_total and
// caddy_mcc_store_errors_total. It adds nothing else.
type meteredStore struct {
	threat.Store
	bans   prometheus.Counter
	errors prometheus.Counter
}

func newMeteredStore(s threat.Store) *meteredStore {
	return &meteredStore{
		Store: s,
		bans: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Subsystem: metricsSubsystem,
			Name:      "fail_safe_bans_total",
			Help:      "Fail-safe bans started: a client's score reached its fusion set's threshold.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Subsystem: metricsSubsystem,
			Name:      "store_errors_total",
			Help:      "Score store operations that failed (the engine then scores locally).",
		}),
	}
}

func (m *meteredStore) Banned(ctx context.Context, ns string, s threat.Subject) (time.Time, error) {
	t, err := m.Store.Banned(ctx, ns, s)
	if err != nil {
		m.errors.Inc()
	}
	return t, err
}

func (m *meteredStore) Add(ctx context.Context, ns string, s threat.Subject, delta int, p threat.Policy) (threat.Result, error) {
	r, err := m.Store.Add(ctx, ns, s, delta, p)
	if err != nil {
		m.errors.Inc()
		return r, err
	}
	// A ban starts on the Add that takes the running total from below the
	// threshold to at or above it.
	if p.Enabled() && delta > 0 && r.Total >= p.Threshold && r.Total-delta < p.Threshold {
		m.bans.Inc()
	}
	return r, nil
}
