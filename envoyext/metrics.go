package envoyext

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mccgate/mcc/adapter"
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
// registry so that several services (tests, benchmarks) can coexist. Names,
// labels and label values come from the table both gateways share
// (adapter.Metrics, docs/metrics.md), under mcc_authz_.
type metrics struct {
	decisions         *adapter.Decisions
	checkDuration     prometheus.Histogram
	accessLogEntries  *prometheus.CounterVec
	accessLogTCP      prometheus.Counter
	accessLogHTTP     prometheus.Counter
	handshakeFailures *prometheus.CounterVec
	handshakeDropped  prometheus.Counter
	peerRefused       *prometheus.CounterVec
	reloads           *prometheus.CounterVec
}

func counterVec(m adapter.Metric) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts(m.Opts(adapter.Authz)), m.Labels)
}

func gaugeFunc(m adapter.Metric, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts(m.Opts(adapter.Authz)), f)
}

func newMetrics(reg *prometheus.Registry, s *Service) *metrics {
	o := adapter.MetricAuthzCheckDuration.Opts(adapter.Authz)
	m := &metrics{
		decisions: adapter.NewDecisions(adapter.Authz),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help,
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3},
		}),
		accessLogEntries:  counterVec(adapter.MetricAuthzAccessLogEntries),
		handshakeFailures: counterVec(adapter.MetricAuthzHandshakeFailures),
		handshakeDropped:  prometheus.NewCounter(prometheus.CounterOpts(adapter.MetricAuthzHandshakeDropped.Opts(adapter.Authz))),
		peerRefused:       counterVec(adapter.MetricAuthzPeerRefused),
		reloads:           counterVec(adapter.MetricAuthzConfigReloads),
	}
	m.accessLogTCP = m.accessLogEntries.WithLabelValues("tcp")
	m.accessLogHTTP = m.accessLogEntries.WithLabelValues("http")
	reg.MustRegister(m.decisions.Collector(), m.checkDuration, m.accessLogEntries, m.handshakeFailures, m.handshakeDropped, m.peerRefused, m.reloads)
	reg.MustRegister(
		adapter.NewEngineCollector(adapter.Authz, s.engine.Stats),
		gaugeFunc(adapter.MetricAuthzCertCacheBytes, func() float64 { _, b := s.certs.stats(); return float64(b) }),
		gaugeFunc(adapter.MetricAuthzCertCacheEntries, func() float64 { n, _ := s.certs.stats(); return float64(n) }),
	)
	// CRL freshness: crl_next_update_seconds and crl_status, computed at
	// scrape time from the configuration in force.
	reg.MustRegister(crlmetrics.New(adapter.AuthzNamespace, adapter.AuthzSubsystem, s.engine.Config, nil))
	if s.pipeline != nil {
		reg.MustRegister(adapter.NewEventsCollector(adapter.Authz, s.pipeline))
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

// decision counts one decision.
func (m *metrics) decision(set string, a fusion.Action, r threat.Reason) {
	m.decisions.ForSet(set).Inc(a, r)
}
