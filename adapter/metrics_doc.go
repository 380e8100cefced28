package adapter

import (
	"fmt"
	"strings"
)

// MetricsMarkdown renders the metric table as docs/metrics.md; a test keeps
// the file equal to it (go test ./adapter -run TestMetricsDoc -update
// rewrites it).
func MetricsMarkdown() string {
	var b strings.Builder
	b.WriteString(`# Metrics

<!-- Generated from adapter.Metrics (adapter/metrics.go) by
     go test ./adapter -run TestMetricsDoc -update; do not edit. -->

Both gateways export their metrics from one table in the ` + "`adapter`" + ` package, so the same thing
has the same name suffix, labels and label values at both. Caddy's names start with ` + "`" + Caddy.Prefix() + "`" + `
(in Caddy's ` + "`/metrics`" + `), ` + "`mcc authz`" + `'s with ` + "`" + Authz.Prefix() + "`" + ` (on its metrics listener).

Label values shared by both gateways:

- ` + "`action`" + `: ` + "`allow`" + `, ` + "`block`" + `.
- ` + "`reason`" + `: the reason code (docs/ARCHITECTURE.md, "Reason codes"), or ` + "`" + LabelNoReason + "`" + ` when the certificate passed.
- ` + "`result`" + ` of ` + "`events_total`" + `: ` + "`" + LabelDelivered + "`" + `, ` + "`" + LabelDropped + "`" + ` (the sink's queue was full), ` + "`" + LabelFailed + "`" + ` (the sink returned an error).
- ` + "`fusion_set`" + ` at ` + "`mcc authz`" + `: the set id, or ` + "`_unknown`" + ` for a request naming no known set
  (` + "`handshake_failures_total`" + ` also has ` + "`_unrouted`" + ` and ` + "`_trusted_proxy`" + `).

The store and ban metrics come from the engine itself (its counters, not the gateway's), so a gateway
reports the same number for the same store state whatever store it runs.

| Suffix | Type | Labels | Caddy | mcc authz | Meaning |
|---|---|---|---|---|---|
`)
	for _, m := range Metrics {
		labels := "-"
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", m.Suffix, m.Type, labels,
			exported(m, Caddy), exported(m, Authz), strings.ReplaceAll(m.Help, "|", "\\|"))
	}
	return b.String()
}

func exported(m Metric, g Gateway) string {
	if m.Gateways&g == 0 {
		return ""
	}
	return "`" + m.Name(g) + "`"
}
