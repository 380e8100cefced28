package caddymod

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// Metric names come from the table both gateways share (adapter.Metrics,
// docs/metrics.md), under caddy_mcc_.
const (
	metricsNamespace = adapter.CaddyNamespace
	metricsSubsystem = adapter.CaddySubsystem
)

// appMetrics are the app's collectors. They live in the pooled state, so
// their counts survive reloads; Caddy gives every config load a new
// registry, so each Provision registers them again.
type appMetrics struct {
	decisions *adapter.Decisions
	engine    *adapter.EngineCollector
	events    *adapter.EventsCollector
}

// newAppMetrics builds the collectors over the engine's own counters (store
// errors, fallback and bans included: the engine counts them, whatever the
// store) and the pipeline's.
func newAppMetrics(eng *fusion.Engine, p *threat.Pipeline) *appMetrics {
	return &appMetrics{
		decisions: adapter.NewDecisions(adapter.Caddy),
		engine:    adapter.NewEngineCollector(adapter.Caddy, eng.Stats),
		events:    adapter.NewEventsCollector(adapter.Caddy, p),
	}
}

// register adds the collectors to reg. A collector already there (several
// apps cannot share a config, but be lenient) is not an error.
func (m *appMetrics) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.decisions.Collector(), m.engine, m.events} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return nil
}

// setCounters are one fusion set's decision counters, resolved once per
// handler so that the request path does a map lookup, not a label hash.
type setCounters struct{ c *adapter.SetDecisions }

func (m *appMetrics) forSet(setID string) *setCounters {
	return &setCounters{c: m.decisions.ForSet(setID)}
}

// inc counts one decision.
func (c *setCounters) inc(d *fusion.Decision) { c.c.Inc(d.Action, d.Reason) }
