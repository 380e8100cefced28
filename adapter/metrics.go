package adapter

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// Gateway names which gateways export a metric: a bit set.
type Gateway uint8

const (
	// Caddy is the caddymod app, under caddy_mcc_ in Caddy's /metrics.
	Caddy Gateway = 1 << iota
	// Authz is `mcc authz` (envoyext), under mcc_authz_.
	Authz
	// Both: the same metric, with the same suffix, labels and label
	// values, at both gateways.
	Both = Caddy | Authz
)

// Namespace and subsystem of each gateway's metric names.
const (
	CaddyNamespace, CaddySubsystem = "caddy", "mcc"
	AuthzNamespace, AuthzSubsystem = "mcc", "authz"
)

// Prefix returns the gateway's metric name prefix ("caddy_mcc_",
// "mcc_authz_"). g must be Caddy or Authz.
func (g Gateway) Prefix() string {
	ns, sub := g.names()
	return ns + "_" + sub + "_"
}

func (g Gateway) names() (namespace, subsystem string) {
	switch g {
	case Caddy:
		return CaddyNamespace, CaddySubsystem
	case Authz:
		return AuthzNamespace, AuthzSubsystem
	}
	panic(fmt.Sprintf("adapter: Gateway %d is not one gateway", g))
}

// MetricType is a Prometheus metric type, as the exposition format spells it.
type MetricType string

// The metric types used.
const (
	Counter   MetricType = "counter"
	Gauge     MetricType = "gauge"
	Histogram MetricType = "histogram"
)

// Metric is one row of the metric table: a name suffix, its labels and which
// gateways export it. The full name is the gateway's prefix and the suffix.
type Metric struct {
	Suffix   string
	Type     MetricType
	Labels   []string
	Help     string
	Gateways Gateway
}

// Name returns the metric's full name at gateway g.
func (m Metric) Name(g Gateway) string { return g.Prefix() + m.Suffix }

// Opts returns the metric's options at gateway g, for
// prometheus.CounterOpts(m.Opts(g)) and prometheus.GaugeOpts(m.Opts(g)).
// It panics when g does not export m: a gateway building a collector the
// table does not give it is a programming error the tests catch at once.
func (m Metric) Opts(g Gateway) prometheus.Opts {
	if m.Gateways&g == 0 {
		panic(fmt.Sprintf("adapter: metric %s is not exported by gateway %d", m.Suffix, g))
	}
	ns, sub := g.names()
	return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: m.Suffix, Help: m.Help}
}

// Desc returns the metric's descriptor at gateway g, for collectors that
// build their metrics at scrape time.
func (m Metric) Desc(g Gateway) *prometheus.Desc {
	o := m.Opts(g)
	return prometheus.NewDesc(prometheus.BuildFQName(o.Namespace, o.Subsystem, o.Name), o.Help, m.Labels, nil)
}

// Label values shared by both gateways.
const (
	// LabelNoReason is the reason label of a decision that found nothing
	// wrong (threat.ReasonNone), at both gateways.
	LabelNoReason = "none"
	// Event results of MetricEvents.
	LabelDelivered = "delivered"
	LabelDropped   = "dropped"
	LabelFailed    = "failed"
)

// ReasonLabel is the reason label value of a decision: the reason code, or
// LabelNoReason for none.
func ReasonLabel(r threat.Reason) string {
	if r == threat.ReasonNone {
		return LabelNoReason
	}
	return string(r)
}

// ActionLabel is the action label value of a decision ("allow", "block").
func ActionLabel(a fusion.Action) string { return a.String() }

// The metric table. Every metric either gateway exports under its prefix is
// here, once; docs/metrics.md lists exactly these rows (TestMetricsDoc), and
// the parity test checks that each gateway exports exactly its rows.
var (
	MetricDecisions = Metric{Suffix: "decisions_total", Type: Counter, Gateways: Both,
		Labels: []string{"fusion_set", "action", "reason"},
		Help:   "Fusion set decisions, by fusion set, action (allow, block) and reason code (none when the certificate passed)."}
	MetricCacheHits = Metric{Suffix: "cache_hits_total", Type: Counter, Gateways: Both,
		Help: "Certificate verdicts served from the engine's verdict cache."}
	MetricCacheMisses = Metric{Suffix: "cache_misses_total", Type: Counter, Gateways: Both,
		Help: "Certificate verdicts the engine had to compute (verdict cache misses)."}
	MetricCacheEntries = Metric{Suffix: "cache_entries", Type: Gauge, Gateways: Both,
		Help: "Verdicts held by the engine's verdict caches."}
	MetricCacheBytes = Metric{Suffix: "cache_bytes", Type: Gauge, Gateways: Both,
		Help: "Accounted size of the engine's verdict caches (each fusion set's bounded by its cache.max_bytes)."}
	MetricEvents = Metric{Suffix: "events_total", Type: Counter, Gateways: Both,
		Labels: []string{"sink", "result"},
		Help:   "Threat events by sink and result (delivered; dropped: the sink's queue was full; failed: the sink returned an error)."}
	MetricEventsQueued = Metric{Suffix: "events_queued", Type: Gauge, Gateways: Both,
		Labels: []string{"sink"},
		Help:   "Threat events waiting in a sink's queue."}
	MetricBans = Metric{Suffix: "fail_safe_bans_total", Type: Counter, Gateways: Both,
		Help: "Fail-safe bans started: a client's score reached its fusion set's threshold (counted by the engine)."}
	MetricStoreErrors = Metric{Suffix: "store_errors_total", Type: Counter, Gateways: Both,
		Help: "Score store operations that failed (the engine then scores in its private in-memory store)."}
	MetricStoreFallback = Metric{Suffix: "store_fallback", Type: Gauge, Gateways: Both,
		Help: "1 while the engine scores in its private in-memory store because the configured store failed or reports itself down (an open Redis circuit breaker), else 0."}
	MetricCRLNextUpdate = Metric{Suffix: "crl_next_update_seconds", Type: Gauge, Gateways: Both,
		Labels: []string{"fusion_set"},
		Help:   "Seconds until the earliest NextUpdate of the fusion set's CRLs (negative once expired: certificates it covers are refused)."}
	MetricCRLStatus = Metric{Suffix: "crl_status", Type: Gauge, Gateways: Both,
		Labels: []string{"fusion_set"},
		Help:   "Freshness of the fusion set's CRLs: 0 fresh, 1 stale soon (re-sign with mcc ca crl), 2 expired."}
	MetricRevocationURLUp = Metric{Suffix: "revocation_url_up", Type: Gauge, Gateways: Both,
		Labels: []string{"fusion_set", "url"},
		Help:   "1 when the last fetch of the fusion set's revocation URL succeeded, 0 when it failed or none succeeded yet (the last good CRL stays in force)."}
	MetricRevocationURLLastSuccess = Metric{Suffix: "revocation_url_last_success_timestamp_seconds", Type: Gauge, Gateways: Both,
		Labels: []string{"fusion_set", "url"},
		Help:   "Unix time of the last successful fetch of the fusion set's revocation URL."}

	MetricCaddyConfigReloads = Metric{Suffix: "config_reloads_total", Type: Counter, Gateways: Caddy,
		Labels: []string{"trigger", "result"},
		Help:   "Loads of the mcc configuration, by trigger (config, watch) and result (success, failure)."}
	MetricCaddyConfigLastReloadOK = Metric{Suffix: "config_last_reload_successful", Type: Gauge, Gateways: Caddy,
		Help: "1 when the last attempt to load the mcc configuration succeeded, 0 when it was refused."}

	MetricAuthzConfigReloads = Metric{Suffix: "config_reloads_total", Type: Counter, Gateways: Authz,
		Labels: []string{"result"},
		Help:   "Fusion set file reloads by result (success, failure)."}
	MetricAuthzCheckDuration = Metric{Suffix: "check_duration_seconds", Type: Histogram, Gateways: Authz,
		Help: "Time spent in Check, from request decoded to response built."}
	MetricAuthzAccessLogEntries = Metric{Suffix: "access_log_entries_total", Type: Counter, Gateways: Authz,
		Labels: []string{"kind"},
		Help:   "Access-log entries received, by kind (tcp, http)."}
	MetricAuthzHandshakeFailures = Metric{Suffix: "handshake_failures_total", Type: Counter, Gateways: Authz,
		Labels: []string{"fusion_set"},
		Help:   "Downstream TLS handshake failures reported by the access log, by fusion set."}
	MetricAuthzHandshakeDropped = Metric{Suffix: "handshake_failures_dropped_total", Type: Counter, Gateways: Authz,
		Help: "Handshake failures over an access-log stream's rate limit: counted, not scored, no event."}
	MetricAuthzPeerRefused = Metric{Suffix: "peer_refused_total", Type: Counter, Gateways: Authz,
		Labels: []string{"service"},
		Help:   "gRPC calls refused because the caller's client certificate is not an allowed peer, by service (check, access_log)."}
	MetricAuthzCertCacheBytes = Metric{Suffix: "cert_cache_bytes", Type: Gauge, Gateways: Authz,
		Help: "Bytes held by the decoded-certificate cache (bounded by its budget)."}
	MetricAuthzCertCacheEntries = Metric{Suffix: "cert_cache_entries", Type: Gauge, Gateways: Authz,
		Help: "Entries in the decoded-certificate cache."}
)

// Metrics is the table, in the order docs/metrics.md lists it.
var Metrics = []Metric{
	MetricDecisions, MetricCacheHits, MetricCacheMisses, MetricCacheEntries, MetricCacheBytes,
	MetricEvents, MetricEventsQueued, MetricBans, MetricStoreErrors, MetricStoreFallback,
	MetricCRLNextUpdate, MetricCRLStatus, MetricRevocationURLUp, MetricRevocationURLLastSuccess,
	MetricCaddyConfigReloads, MetricCaddyConfigLastReloadOK,
	MetricAuthzConfigReloads, MetricAuthzCheckDuration, MetricAuthzAccessLogEntries,
	MetricAuthzHandshakeFailures, MetricAuthzHandshakeDropped, MetricAuthzPeerRefused,
	MetricAuthzCertCacheBytes, MetricAuthzCertCacheEntries,
}
