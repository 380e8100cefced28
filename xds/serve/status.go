package serve

import (
	"sort"
	"strings"
	"time"
)

// Status is the /status page: the configuration, each node group's
// snapshot, and each node's ACKed versions and last NACK.
type Status struct {
	Config ConfigStatus  `json:"config"`
	Groups []GroupStatus `json:"groups"`
	Nodes  []NodeStatus  `json:"nodes"`
}

// ConfigStatus describes the configuration being served.
type ConfigStatus struct {
	// Version of the configuration last published.
	Version  string    `json:"version"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LastLoadError is why the latest attempt to load a configuration was
	// refused; empty once a good configuration loads again.
	LastLoadError   string    `json:"last_load_error,omitempty"`
	LastLoadErrorAt time.Time `json:"last_load_error_at,omitzero"`
	// Warnings about the configuration served that did not stop it: CRLs
	// expired (Envoy refuses what they cover) or close to expiry.
	Warnings []string `json:"warnings,omitempty"`
}

// GroupStatus describes one node group's snapshot.
type GroupStatus struct {
	Cluster string `json:"cluster"`
	// Version identifies the snapshot served to the group (a hash of its
	// per-type versions).
	Version     string    `json:"version"`
	PublishedAt time.Time `json:"published_at,omitzero"`
	// Versions maps resource type to the version served.
	Versions map[string]string `json:"versions,omitempty"`
	// LastACKedVersion is the newest snapshot a node of the group accepted
	// entirely.
	LastACKedVersion string `json:"last_acked_version,omitempty"`
	// RolledBackFrom is the snapshot a NACK made the group leave.
	RolledBackFrom string    `json:"rolled_back_from,omitempty"`
	RolledBackAt   time.Time `json:"rolled_back_at,omitzero"`
	// Rejected maps "<type> <version>" of rejected resources to the NACK
	// message; they are not published again.
	Rejected map[string]string `json:"rejected,omitempty"`
}

// NodeStatus describes one Envoy (or other xDS client) by node id.
type NodeStatus struct {
	ID        string `json:"id"`
	Cluster   string `json:"cluster"`
	Connected bool   `json:"connected"`
	Streams   int    `json:"streams"`
	Protocol  string `json:"protocol"`
	// UnknownCluster: the node's cluster matches no node group.
	UnknownCluster bool `json:"unknown_cluster,omitempty"`
	// Acked maps resource type (listener, route, cluster, endpoint,
	// secret) to the version the node last ACKed.
	Acked     map[string]string `json:"acked"`
	LastNACK  *NACK             `json:"last_nack,omitempty"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
}

// Status returns a copy of the current state.
func (cp *ControlPlane) Status() Status {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	s := Status{
		Config: ConfigStatus{
			Version:         cp.config.version,
			LoadedAt:        cp.config.loadedAt,
			LastLoadError:   cp.config.lastError,
			LastLoadErrorAt: cp.config.lastErrorAt,
			Warnings:        append([]string(nil), cp.config.warnings...),
		},
		Groups: []GroupStatus{},
		Nodes:  []NodeStatus{},
	}
	for _, cluster := range sortedKeys(cp.groups) {
		gs := cp.groups[cluster]
		g := GroupStatus{
			Cluster:          cluster,
			PublishedAt:      gs.publishedAt,
			LastACKedVersion: gs.lastACKed,
			RolledBackFrom:   gs.rolledBackFrom,
			RolledBackAt:     gs.rolledBackAt,
		}
		if gs.current != nil {
			g.Version = gs.current.id
			g.Versions = make(map[string]string, len(gs.current.versions))
			for typ, v := range gs.current.versions {
				g.Versions[typeLabel(typ)] = v
			}
		}
		if len(gs.rejected) > 0 {
			g.Rejected = make(map[string]string, len(gs.rejected))
			for k, msg := range gs.rejected {
				typ, v, _ := strings.Cut(k, " ")
				g.Rejected[typeLabel(typ)+" "+v] = msg
			}
		}
		s.Groups = append(s.Groups, g)
	}
	for _, ns := range cp.nodes {
		n := NodeStatus{
			ID: ns.id, Cluster: ns.cluster, Connected: ns.streams > 0, Streams: ns.streams,
			Protocol: ns.protocol, UnknownCluster: ns.unknown, Acked: map[string]string{},
			FirstSeen: ns.firstSeen, LastSeen: ns.lastSeen,
		}
		for typ, v := range ns.acked {
			n.Acked[typeLabel(typ)] = v
		}
		if ns.lastNACK != nil {
			nack := *ns.lastNACK
			n.LastNACK = &nack
		}
		s.Nodes = append(s.Nodes, n)
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].ID < s.Nodes[j].ID })
	return s
}
