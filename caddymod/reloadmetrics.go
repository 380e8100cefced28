package caddymod

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Triggers of a fusion set configuration load.
const (
	// triggerConfig is a Caddy config load or reload (the admin API,
	// `caddy reload`, a new Caddyfile).
	triggerConfig = "config"
	// triggerWatch is the app's file watcher, after a change to the fusion
	// set file or a file it references.
	triggerWatch = "watch"
)

// The reload collectors live at package level, not in the pooled state: a
// refused config may never get a state, and it is the config that keeps
// serving, with its own registry, whose /metrics must show the refusal.
var (
	configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "config_reloads_total",
		Help: "Loads of the mcc configuration, by trigger (config: a Caddy config load or reload; watch: a changed fusion set, CA, CRL or revocation file) " +
			"and result (success; failure: refused, the last good configuration keeps serving).",
	}, []string{"trigger", "result"})
	configLastReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Subsystem: metricsSubsystem,
		Name:      "config_last_reload_successful",
		Help:      "1 when the last attempt to load the mcc configuration (either trigger) succeeded, 0 when it was refused.",
	})
)

func init() {
	// Every series exists from the start, so a failure shows as a change
	// from 0 rather than as a new series.
	for _, tr := range []string{triggerConfig, triggerWatch} {
		for _, res := range []string{"success", "failure"} {
			configReloads.WithLabelValues(tr, res)
		}
	}
}

// registerReloadMetrics adds the reload collectors to a config's registry.
func registerReloadMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{configReloads, configLastReloadOK} {
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

func configLoaded(trigger string) {
	configReloads.WithLabelValues(trigger, "success").Inc()
	configLastReloadOK.Set(1)
}

func configLoadFailed(trigger string) {
	configReloads.WithLabelValues(trigger, "failure").Inc()
	configLastReloadOK.Set(0)
}
