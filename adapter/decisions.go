package adapter

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// Decisions is decisions_total{fusion_set,action,reason} at one gateway,
// with the label values both gateways use (ReasonLabel, ActionLabel).
type Decisions struct {
	vec  *prometheus.CounterVec
	sets sync.Map // fusion set id -> *SetDecisions
}

// NewDecisions returns the decisions counter of gateway g.
func NewDecisions(g Gateway) *Decisions {
	return &Decisions{vec: prometheus.NewCounterVec(prometheus.CounterOpts(MetricDecisions.Opts(g)), MetricDecisions.Labels)}
}

// Collector is what to register.
func (d *Decisions) Collector() prometheus.Collector { return d.vec }

// ForSet returns the counters of one fusion set, created once: WithLabelValues
// hashes its labels on every call, and the request path should not.
func (d *Decisions) ForSet(set string) *SetDecisions {
	if c, ok := d.sets.Load(set); ok {
		return c.(*SetDecisions)
	}
	c := &SetDecisions{
		allow: make(map[threat.Reason]prometheus.Counter, len(threat.AllReasons)+1),
		block: make(map[threat.Reason]prometheus.Counter, len(threat.AllReasons)+1),
		vec:   d.vec,
		set:   set,
	}
	for _, r := range append([]threat.Reason{threat.ReasonNone}, threat.AllReasons...) {
		c.allow[r] = d.vec.WithLabelValues(set, ActionLabel(fusion.Allow), ReasonLabel(r))
		c.block[r] = d.vec.WithLabelValues(set, ActionLabel(fusion.Block), ReasonLabel(r))
	}
	c.good = c.allow[threat.ReasonNone]
	actual, _ := d.sets.LoadOrStore(set, c)
	return actual.(*SetDecisions)
}

// SetDecisions are one fusion set's decision counters.
type SetDecisions struct {
	// good is allow with no reason: nearly every request.
	good  prometheus.Counter
	allow map[threat.Reason]prometheus.Counter
	block map[threat.Reason]prometheus.Counter
	vec   *prometheus.CounterVec
	set   string
}

// Inc counts one decision. The maps are read-only once built, so Inc is
// safe for concurrent use.
func (c *SetDecisions) Inc(a fusion.Action, r threat.Reason) {
	if a == fusion.Allow && r == threat.ReasonNone {
		c.good.Inc()
		return
	}
	m := c.allow
	if a == fusion.Block {
		m = c.block
	}
	if ctr, ok := m[r]; ok {
		ctr.Inc()
		return
	}
	// A reason code newer than this build's table still gets counted.
	c.vec.WithLabelValues(c.set, ActionLabel(a), ReasonLabel(r)).Inc()
}
