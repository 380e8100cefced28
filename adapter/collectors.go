package adapter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// EngineCollector exports what the engine counts itself (fusion.EngineStats:
// verdict cache, fail-safe bans, store errors and fallback) under gateway
// g's prefix. Both gateways register it, so the same engine state reads the
// same at both.
type EngineCollector struct {
	stats func() fusion.EngineStats
	hits, misses, entries, bytes,
	bans, storeErrors, storeFallback *prometheus.Desc
}

// NewEngineCollector returns the collector of stats (usually
// engine.Stats) at gateway g.
func NewEngineCollector(g Gateway, stats func() fusion.EngineStats) *EngineCollector {
	return &EngineCollector{
		stats:         stats,
		hits:          MetricCacheHits.Desc(g),
		misses:        MetricCacheMisses.Desc(g),
		entries:       MetricCacheEntries.Desc(g),
		bytes:         MetricCacheBytes.Desc(g),
		bans:          MetricBans.Desc(g),
		storeErrors:   MetricStoreErrors.Desc(g),
		storeFallback: MetricStoreFallback.Desc(g),
	}
}

// Describe implements prometheus.Collector.
func (c *EngineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.entries, c.bytes, c.bans, c.storeErrors, c.storeFallback} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Stats call per scrape.
func (c *EngineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	fallback := 0.0
	if st.StoreFallback {
		fallback = 1
	}
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(st.CacheHits))
	ch <- prometheus.MustNewConstMetric(c.misses, prometheus.CounterValue, float64(st.CacheMisses))
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.CacheEntries))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.CacheBytes))
	ch <- prometheus.MustNewConstMetric(c.bans, prometheus.CounterValue, float64(st.Bans))
	ch <- prometheus.MustNewConstMetric(c.storeErrors, prometheus.CounterValue, float64(st.StoreErrors))
	ch <- prometheus.MustNewConstMetric(c.storeFallback, prometheus.GaugeValue, fallback)
}

// EventsCollector exports an event pipeline's per-sink counters as
// events_total{sink,result} and events_queued{sink}.
type EventsCollector struct {
	p             *threat.Pipeline
	total, queued *prometheus.Desc
}

// NewEventsCollector returns the collector of p's sinks at gateway g.
func NewEventsCollector(g Gateway, p *threat.Pipeline) *EventsCollector {
	return &EventsCollector{p: p, total: MetricEvents.Desc(g), queued: MetricEventsQueued.Desc(g)}
}

// Describe implements prometheus.Collector.
func (c *EventsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.queued
}

// Collect implements prometheus.Collector.
func (c *EventsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.p == nil {
		return
	}
	// Two sinks of one type share a name; sum them so the series stay unique.
	var order []string
	sums := map[string]*threat.SinkStats{}
	for _, s := range c.p.Stats() {
		t, ok := sums[s.Sink]
		if !ok {
			t = &threat.SinkStats{Sink: s.Sink}
			sums[s.Sink] = t
			order = append(order, s.Sink)
		}
		t.Delivered += s.Delivered
		t.Dropped += s.Dropped
		t.Failed += s.Failed
		t.Queued += s.Queued
	}
	for _, name := range order {
		t := sums[name]
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(t.Delivered), name, LabelDelivered)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(t.Dropped), name, LabelDropped)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(t.Failed), name, LabelFailed)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(t.Queued), name)
	}
}
