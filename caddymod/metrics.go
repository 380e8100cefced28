package caddymod

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

const (
	metricsNamespace = "caddy"
	metricsSubsystem = "mcc"
)

// appMetrics are the app's collectors. They live in the pooled state, so
// their counts survive reloads; Caddy gives every config load a new
// registry, so each Provision registers them again.
type appMetrics struct {
	decisions   *prometheus.CounterVec
	cacheHits   prometheus.CounterFunc
	cacheMisses prometheus.CounterFunc
	events      *eventsCollector
	bans        prometheus.Counter
	storeErrors prometheus.Counter
}

func newAppMetrics(eng *fusion.Engine, store *meteredStore, p *threat.Pipeline) *appMetrics {
	return &appMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Subsystem: metricsSubsystem,
			Name:      "decisions_total",
			Help:      "Fusion set decisions, by fusion set, action (allow, block) and reason code (none when the certificate passed).",
		}, []string{"fusion_set", "action", "reason"}),
		cacheHits: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Subsystem: metricsSubsystem,
			Name:      "cache_hits_total",
			Help:      "Certificate verdicts served from the engine's cache.",
		}, func() float64 { return float64(eng.Stats().CacheHits) }),
		cacheMisses: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Subsystem: metricsSubsystem,
			Name:      "cache_misses_total",
			Help:      "Certificate verdicts the engine had to compute.",
		}, func() float64 { return float64(eng.Stats().CacheMisses) }),
		events:      newEventsCollector(p),
		bans:        store.bans,
		storeErrors: store.errors,
	}
}

// register adds the collectors to reg. A collector already there (several
// apps cannot share a config, but be lenient) is not an error.
func (m *appMetrics) register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.decisions, m.cacheHits, m.cacheMisses, m.events, m.bans, m.storeErrors} {
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

// noReason is the reason label of a decision that found nothing wrong.
const noReason = "none"

// setCounters are one fusion set's decision counters, resolved once per
// handler so that the request path does a map lookup, not a label hash.
type setCounters struct {
	// good is allow with no reason: nearly every request.
	good  prometheus.Counter
	allow map[threat.Reason]prometheus.Counter
	block map[threat.Reason]prometheus.Counter
	vec   *prometheus.CounterVec
	set   string
}

func (m *appMetrics) forSet(setID string) *setCounters {
	c := &setCounters{
		allow: make(map[threat.Reason]prometheus.Counter, len(threat.AllReasons)+1),
		block: make(map[threat.Reason]prometheus.Counter, len(threat.AllReasons)+1),
		vec:   m.decisions,
		set:   setID,
	}
	for _, r := range append([]threat.Reason{threat.ReasonNone}, threat.AllReasons...) {
		label := string(r)
		if r == threat.ReasonNone {
			label = noReason
		}
		c.allow[r] = m.decisions.WithLabelValues(setID, fusion.Allow.String(), label)
		c.block[r] = m.decisions.WithLabelValues(setID, fusion.Block.String(), label)
	}
	c.good = c.allow[threat.ReasonNone]
	return c
}

// inc counts one decision.
func (c *setCounters) inc(d *fusion.Decision) {
	if d.Action == fusion.Allow && d.Reason == threat.ReasonNone {
		c.good.Inc()
		return
	}
	m := c.allow
	if d.Action == fusion.Block {
		m = c.block
	}
	if ctr, ok := m[d.Reason]; ok {
		ctr.Inc()
		return
	}
	// A reason code newer than this build's table still gets counted.
	c.vec.WithLabelValues(c.set, d.Action.String(), string(d.Reason)).Inc()
}

// eventsCollector exposes the pipeline's per-sink counters as
// caddy_mcc_events_total{sink,result}.
type eventsCollector struct {
	p    *threat.Pipeline
	desc *prometheus.Desc
}

func newEventsCollector(p *threat.Pipeline) *eventsCollector {
	return &eventsCollector{
		p: p,
		desc: prometheus.NewDesc(
			prometheus.BuildFQName(metricsNamespace, metricsSubsystem, "events_total"),
			"Threat events by sink and result (delivered, dropped: the sink's queue was full, failed: the sink returned an error).",
			[]string{"sink", "result"}, nil),
	}
}

func (c *eventsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *eventsCollector) Collect(ch chan<- prometheus.Metric) {
	// Two sinks of one type share a name; sum them so the series stay unique.
	type totals struct{ delivered, dropped, failed uint64 }
	var order []string
	sums := map[string]*totals{}
	for _, s := range c.p.Stats() {
		t, ok := sums[s.Sink]
		if !ok {
			t = new(totals)
			sums[s.Sink] = t
			order = append(order, s.Sink)
		}
		t.delivered += s.Delivered
		t.dropped += s.Dropped
		t.failed += s.Failed
	}
	for _, name := range order {
		t := sums[name]
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t.delivered), name, "delivered")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t.dropped), name, "dropped")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t.failed), name, "failed")
	}
}
