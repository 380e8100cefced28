package console

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

// maxGatewayRows bounds the instances the gateways view lists.
const maxGatewayRows = 200

// gatewayQuiet is how long an instance may go without delivering events
// before the view marks it quiet: a gateway sends only when it has
// events, so quiet is not down, but a fleet where one instance is quiet
// while the others report is worth a look.
const gatewayQuiet = 15 * time.Minute

// indexBehind is how many events waiting for the event index the view
// calls a backlog: the server indexes once a second, in runs of 50,000.
const indexBehind = 100_000

// gatewayKinds names the gateway values of threat events.
var gatewayKinds = map[string]string{
	threat.GatewayCaddy: "Caddy",
	threat.GatewayEnvoy: "mcc authz (Envoy)",
	"server":            "mcc server",
}

// gateways shows each gateway instance that delivered events (Caddy, mcc
// authz) with its software version and newest event, and each Envoy node
// of the configured mcc xds instances with what it ACKed, its last NACK
// and whether it is current.
func (c *Console) gateways(w http.ResponseWriter, r *http.Request, s *session) {
	list, err := c.DB.GatewayInstances(r.Context(), maxGatewayRows)
	if err != nil {
		c.internal(w, r, "the gateway instances", err)
		return
	}
	now := c.Now()
	type instance struct {
		Kind, Gateway, Node, Agent, Token, FirstSeen, LastSeen, Ago, LastEvent, LastEventID string
		Events                                                                              int64
		Quiet                                                                               bool
	}
	rows := make([]instance, len(list))
	for i, g := range list {
		kind := gatewayKinds[g.Gateway]
		if kind == "" {
			kind = g.Gateway
		}
		rows[i] = instance{Kind: kind, Gateway: g.Gateway, Node: g.Node, Agent: g.Agent, Token: g.TokenName,
			FirstSeen: stamp(g.FirstSeen), LastSeen: stamp(g.LastSeen), Ago: ago(now, g.LastSeen),
			LastEventID: g.LastEventID, Events: g.Events, Quiet: now.Sub(g.LastSeen) > gatewayQuiet}
		if !g.LastEvent.IsZero() {
			rows[i].LastEvent = stamp(g.LastEvent)
		}
	}
	recorded, err := c.DB.GatewayInstanceCount(r.Context())
	if err != nil {
		c.internal(w, r, "the gateway instances", err)
		return
	}
	pending, err := c.DB.PendingSpan(r.Context())
	if err != nil {
		c.internal(w, r, "the event index", err)
		return
	}
	data := map[string]any{"Title": "Gateways", "Instances": rows, "More": len(list) == maxGatewayRows,
		"Pending": pending, "Behind": pending > indexBehind,
		"Recorded": recorded, "Full": recorded >= store.MaxGatewayInstances, "PerToken": store.MaxGatewayInstancesPerToken,
		"XDS": c.xdsViews(r.Context(), now), "XDSConfigured": len(c.XDS) > 0}
	c.render(w, r, http.StatusOK, "gateways", s, data)
}

// xdsView is one mcc xds instance as the view shows it.
type xdsView struct {
	Source, Error                             string
	Version, LoadedAt, LoadError, LoadErrorAt string
	Warnings                                  []string
	Groups                                    []xdsGroup
	Nodes                                     []xdsNode
	Current, Total                            int
}

type xdsGroup struct {
	Cluster, Version, PublishedAt, LastACKed, RolledBackFrom string
	Types                                                    []xdsType
	Rejected                                                 []string
}

type xdsType struct{ Type, Served, Acked, State string }

type xdsNode struct {
	ID, Cluster, Protocol, State, LastSeen string
	Connected, Unknown                     bool
	Types                                  []xdsType
	NACK                                   *xdsNACK
	NACKTime                               string
}

// xdsViews reads every configured mcc xds at once, each within
// xdsStatusTimeout.
func (c *Console) xdsViews(ctx context.Context, now time.Time) []xdsView {
	out := make([]xdsView, len(c.XDS))
	var wg sync.WaitGroup
	for i, src := range c.XDS {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, xdsStatusTimeout)
			defer cancel()
			v := xdsView{Source: src.Display()}
			st, err := src.Status(sctx)
			if err != nil {
				v.Error = err.Error()
				out[i] = v
				return
			}
			out[i] = xdsViewOf(v, st)
		}()
	}
	wg.Wait()
	return out
}

// xdsViewOf lays out one status: each node's ACKed version per type
// against what its group serves.
func xdsViewOf(v xdsView, st xdsStatus) xdsView {
	v.Version, v.LoadError, v.Warnings = st.Config.Version, st.Config.LastLoadError, st.Config.Warnings
	v.LoadedAt, v.LoadErrorAt = stamp(st.Config.LoadedAt), stamp(st.Config.LastLoadErrorAt)
	served := map[string]map[string]string{}
	for _, g := range st.Groups {
		served[g.Cluster] = g.Versions
		gv := xdsGroup{Cluster: g.Cluster, Version: g.Version, PublishedAt: stamp(g.PublishedAt),
			LastACKed: g.LastACKedVersion, RolledBackFrom: g.RolledBackFrom}
		for _, t := range sortedTypes(g.Versions) {
			gv.Types = append(gv.Types, xdsType{Type: t, Served: g.Versions[t]})
		}
		for k, msg := range g.Rejected {
			gv.Rejected = append(gv.Rejected, k+": "+msg)
		}
		sort.Strings(gv.Rejected)
		v.Groups = append(v.Groups, gv)
	}
	for _, n := range st.Nodes {
		nv := xdsNode{ID: n.ID, Cluster: n.Cluster, Protocol: n.Protocol, Connected: n.Connected,
			Unknown: n.UnknownCluster, LastSeen: stamp(n.LastSeen), NACK: n.LastNACK}
		if n.LastNACK != nil {
			nv.NACKTime = stamp(n.LastNACK.Time)
		}
		group := served[n.Cluster]
		synced, stale := 0, 0
		for _, t := range sortedTypes(group) {
			state := syncState(group[t], n.Acked[t])
			nv.Types = append(nv.Types, xdsType{Type: t, Served: group[t], Acked: n.Acked[t], State: state})
			switch state {
			case "SYNCED":
				synced++
			case "STALE":
				stale++
			}
		}
		switch {
		case n.UnknownCluster || group == nil:
			nv.State = "NO GROUP"
		case synced == len(group):
			nv.State = "SYNCED"
			v.Current++
		case stale > 0:
			nv.State = "STALE"
		default:
			nv.State = "NOT SENT"
		}
		v.Nodes = append(v.Nodes, nv)
	}
	v.Total = len(st.Nodes)
	return v
}

// stamp is a time as the views write it ("" for none).
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// ago says how long before now t was, to the second.
func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

// sortedTypes lists the types of m in typeOrder, then any other by name.
func sortedTypes(m map[string]string) []string {
	var out, rest []string
	for _, t := range typeOrder {
		if _, ok := m[t]; ok {
			out = append(out, t)
		}
	}
	for t := range m {
		if !slices.Contains(typeOrder, t) {
			rest = append(rest, t)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}
