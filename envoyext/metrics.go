package envoyext

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/crlmetrics"
	"github.com/mccgate/mcc/threat"
)

// Label values used when a fusion set cannot be named.
const (
	labelUnknownSet = "_unknown"
	labelUnrouted   = "_unrouted"
	labelFromProxy  = "_trusted_proxy"
)

// metrics are the service's Prometheus collectors, on the service's own
// registry so that several services (tests, benchmarks) can coexist.
type metrics struct {
	decisions         *prometheus.CounterVec
	checkDuration     prometheus.Histogram
	accessLogEntries  *prometheus.CounterVec
	accessLogTCP      prometheus.Counter
	accessLogHTTP     prometheus.Counter
	handshakeFailures *prometheus.CounterVec
	handshakeDropped  prometheus.Counter
	peerRefused       *prometheus.CounterVec
	reloads           *prometheus.CounterVec

	// decisionCounters caches the decisions child per label tuple:
	// WithLabelValues hashes its labels on every call, a map hit does not.
	decisionCounters sync.Map // decisionKey -> prometheus.Counter
}

type decisionKey struct {
	set    string
	action fusion.Action
	reason threat.Reason
}

func newMetrics(reg *prometheus.Registry, s *Service) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "decisions_total",
			Help: "ext_authz decisions by fusion set, action (allow, block) and reason code (\"\" = good certificate).",
		}, []string{"fusion_set", "action", "reason"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "check_duration_seconds",
			Help:    "Time spent in Check, from request decoded to response built.",
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3},
		}),
		accessLogEntries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "access_log_entries_total",
			Help: "Access-log entries received, by kind (tcp, http).",
		}, []string{"kind"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "handshake_failures_total",
			Help: "Downstream TLS handshake failures reported by the access log, by fusion set.",
		}, []string{"fusion_set"}),
		handshakeDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "handshake_failures_dropped_total",
			Help: "Handshake failures over an access-log stream's rate limit: counted, not scored, no event.",
		}),
		peerRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "peer_refused_total",
			Help: "gRPC calls refused because the caller's client certificate is not an allowed peer, by service (check, access_log).",
		}, []string{"service"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "config_reloads_total",
			Help: "Fusion set file reloads by result (success, failure).",
		}, []string{"result"}),
	}
	m.accessLogTCP = m.accessLogEntries.WithLabelValues("tcp")
	m.accessLogHTTP = m.accessLogEntries.WithLabelValues("http")
	reg.MustRegister(m.decisions, m.checkDuration, m.accessLogEntries, m.handshakeFailures, m.handshakeDropped, m.peerRefused, m.reloads)
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "verdict_cache_hits_total",
			Help: "Certificate verdicts served from the engine's cache.",
		}, func() float64 { return float64(s.engine.Stats().CacheHits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "verdict_cache_misses_total",
			Help: "Certificate verdicts computed (cache misses).",
		}, func() float64 { return float64(s.engine.Stats().CacheMisses) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "cert_cache_bytes",
			Help: "Bytes held by the decoded-certificate cache (bounded by its budget).",
		}, func() float64 { _, b := s.certs.stats(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "mcc", Subsystem: "authz", Name: "cert_cache_entries",
			Help: "Entries in the decoded-certificate cache.",
		}, func() float64 { n, _ := s.certs.stats(); return float64(n) }),
	)
	// CRL freshness: mcc_authz_crl_next_update_seconds and _crl_status,
	// computed at scrape time from the configuration in force.
	reg.MustRegister(crlmetrics.New("mcc", "authz", s.engine.Config, nil))
	if s.pipeline != nil {
		reg.MustRegister(&pipelineCollector{p: s.pipeline})
	}
	// A shared registry may have these already; that is fine.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		var dup prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &dup) {
			panic(err)
		}
	}
	return m
}

func (m *metrics) decision(set string, a fusion.Action, r threat.Reason) {
	k := decisionKey{set, a, r}
	if c, ok := m.decisionCounters.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.decisions.WithLabelValues(set, a.String(), string(r))
	m.decisionCounters.Store(k, c)
	c.Inc()
}

// pipelineCollector exports the event pipeline's per-sink counters.
type pipelineCollector struct{ p *threat.Pipeline }

var (
	descDelivered = prometheus.NewDesc("mcc_authz_events_delivered_total", "Threat events delivered, by sink.", []string{"sink"}, nil)
	descDropped   = prometheus.NewDesc("mcc_authz_events_dropped_total", "Threat events dropped because a sink's queue was full, by sink.", []string{"sink"}, nil)
	descFailed    = prometheus.NewDesc("mcc_authz_events_failed_total", "Threat events a sink failed to deliver, by sink.", []string{"sink"}, nil)
	descQueued    = prometheus.NewDesc("mcc_authz_events_queued", "Threat events waiting in a sink's queue.", []string{"sink"}, nil)
)

func (c *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDelivered
	ch <- descDropped
	ch <- descFailed
	ch <- descQueued
}

func (c *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.p.Stats() {
		ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered), st.Sink)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped), st.Sink)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.Failed), st.Sink)
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(st.Queued), st.Sink)
	}
}
