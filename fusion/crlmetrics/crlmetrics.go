// Package crlmetrics exports the freshness of the CRLs of the fusion sets a
// gateway serves, so that an operator is warned before a CRL expires (when
// every certificate it covers is refused; see fusion's CRL policy). With
// namespace "mcc" and subsystem "authz":
//
//	mcc_authz_crl_next_update_seconds{fusion_set}  seconds until the
//	    earliest NextUpdate of the set's CRLs, negative once expired
//	mcc_authz_crl_status{fusion_set}               0 fresh, 1 stale soon
//	    (last quarter of its validity), 2 expired (the worst of the set's
//	    CRLs)
//
//	mcc_authz_revocation_url_up{fusion_set,url}    1 when the last fetch
//	    of a revocation URL succeeded, else 0 (the last good CRL stays
//	    in force)
//	mcc_authz_revocation_url_last_success_timestamp_seconds{fusion_set,url}
//	    Unix time of the last good fetch (no series before the first)
//
// Sets without a CRL (or whose CRLs have no NextUpdate) have no crl_ series.
// Values are computed at scrape time from the configuration in force, so
// a reload needs no bookkeeping.
package crlmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/fusion"
)

// Collector is a prometheus.Collector for the CRLs of a configuration.
type Collector struct {
	config     func() *fusion.Config
	now        func() time.Time
	nextUpdate *prometheus.Desc
	status     *prometheus.Desc
	urlUp      *prometheus.Desc
	urlLastOK  *prometheus.Desc
}

// New returns a collector of the configuration config returns at each
// scrape (for example engine.Config), its metrics named
// namespace_subsystem_crl_*; now nil means time.Now.
func New(namespace, subsystem string, config func() *fusion.Config, now func() time.Time) *Collector {
	if now == nil {
		now = time.Now
	}
	return &Collector{
		config: config,
		now:    now,
		nextUpdate: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "crl_next_update_seconds"),
			"Seconds until the earliest NextUpdate of the fusion set's CRLs (negative once expired: certificates it covers are refused).",
			[]string{"fusion_set"}, nil),
		status: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "crl_status"),
			"Freshness of the fusion set's CRLs: 0 fresh, 1 stale soon (re-sign with mcc ca crl), 2 expired.",
			[]string{"fusion_set"}, nil),
		urlUp: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "revocation_url_up"),
			"1 when the last fetch of the fusion set's revocation URL succeeded, 0 when it failed or none succeeded yet (the last good CRL stays in force).",
			[]string{"fusion_set", "url"}, nil),
		urlLastOK: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "revocation_url_last_success_timestamp_seconds"),
			"Unix time of the last successful fetch of the fusion set's revocation URL.",
			[]string{"fusion_set", "url"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.nextUpdate
	ch <- c.status
	ch <- c.urlUp
	ch <- c.urlLastOK
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	cfg := c.config()
	if cfg == nil {
		return
	}
	now := c.now()
	for _, id := range cfg.IDs {
		set := cfg.Sets[id]
		for _, u := range set.RevocationURLStates() {
			up := 0.0
			if u.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(c.urlUp, prometheus.GaugeValue, up, id, u.URL)
			if !u.LastSuccess.IsZero() {
				ch <- prometheus.MustNewConstMetric(c.urlLastOK, prometheus.GaugeValue, float64(u.LastSuccess.UnixNano())/1e9, id, u.URL)
			}
		}
		secs, ok := set.CRLSecondsUntilNextUpdate(now)
		if !ok {
			continue
		}
		status := 0.0
		for _, st := range set.CRLStates(now) {
			switch {
			case st.Status == fusion.CRLExpired:
				status = 2
			case st.Status == fusion.CRLStaleSoon && status < 1:
				status = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(c.nextUpdate, prometheus.GaugeValue, secs, id)
		ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, status, id)
	}
}
