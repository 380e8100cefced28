package serve

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics live in the control plane's own registry: the process may hold
// other registries (tests run many control planes), and the global one would
// make them collide.
type metrics struct {
	registry        *prometheus.Registry
	connectedNodes  prometheus.Gauge
	streams         *prometheus.GaugeVec
	pushes          *prometheus.CounterVec
	acks            *prometheus.CounterVec
	nacks           *prometheus.CounterVec
	rollbacks       prometheus.Counter
	buildSeconds    prometheus.Histogram
	publishes       prometheus.Counter
	configErrors    prometheus.Counter
	unknownClusters prometheus.Counter
	refused         *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connectedNodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcc_xds_connected_nodes", Help: "Envoy nodes (by node id) with at least one open xDS stream.",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcc_xds_streams", Help: "Open xDS streams by protocol (sotw, delta).",
		}, []string{"protocol"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcc_xds_pushes_total", Help: "Discovery responses sent, by resource type.",
		}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcc_xds_acks_total", Help: "Discovery responses accepted by a node, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcc_xds_nacks_total", Help: "Discovery responses rejected by a node, by resource type.",
		}, []string{"type"}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcc_xds_rollbacks_total", Help: "Node groups rolled back to their last ACKed snapshot after a NACK.",
		}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mcc_xds_snapshot_build_seconds", Help: "Time to build, check and validate the snapshots of one configuration.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		publishes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcc_xds_config_publishes_total", Help: "Configurations built, validated and published.",
		}),
		configErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcc_xds_config_load_errors_total", Help: "Configurations refused (bad file or invalid resources); the last good one kept serving.",
		}),
		unknownClusters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcc_xds_unknown_cluster_streams_total", Help: "Streams from nodes whose cluster matches no node group.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcc_xds_refused_streams_total",
			Help: "xDS streams and fetches refused, by reason (not_a_peer, no_certificate, unknown_group, node_changed, invalid_node, limit).",
		}, []string{"reason"}),
	}
	// Zero series from the start, so dashboards and alerts see the types
	// before the first push.
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType} {
		m.pushes.WithLabelValues(typeLabel(t))
		m.acks.WithLabelValues(typeLabel(t))
		m.nacks.WithLabelValues(typeLabel(t))
	}
	for _, r := range []string{"not_a_peer", "no_certificate", "unknown_group", "node_changed", "invalid_node", "limit"} {
		m.refused.WithLabelValues(r)
	}
	m.streams.WithLabelValues("sotw")
	m.streams.WithLabelValues("delta")
	m.registry.MustRegister(m.connectedNodes, m.streams, m.pushes, m.acks, m.nacks, m.rollbacks,
		m.buildSeconds, m.publishes, m.configErrors, m.unknownClusters, m.refused)
	return m
}

// typeLabel shortens a type URL for metric labels and the status page.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route"
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoint"
	case resourcev3.SecretType:
		return "secret"
	case resourcev3.RuntimeType:
		return "runtime"
	case resourcev3.ExtensionConfigType:
		return "extension_config"
	case resourcev3.ScopedRouteType:
		return "scoped_route"
	case resourcev3.VirtualHostType:
		return "virtual_host"
	}
	return "other"
}
