package serve

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
)

// The state-of-the-world and delta servers number their streams
// independently, so a stream is keyed by protocol and id.
type streamKey struct {
	delta bool
	id    int64
}

// streamState follows one xDS stream: which node it belongs to and which
// version each response nonce carried, so that an ACK or NACK (which names
// the nonce) can be tied to the version it is about.
type streamState struct {
	node    string
	cluster string
	known   bool // node identified (first request seen)
	// sent maps type URL to nonce to version. State of the world only
	// honours the latest nonce per type; delta ACKs every response.
	sent map[string]map[string]string
}

// nodeState is what /status shows per node id.
type nodeState struct {
	id, cluster string
	streams     int
	protocol    string
	acked       map[string]string // type URL -> version
	lastNACK    *NACK
	firstSeen   time.Time
	lastSeen    time.Time
	unknown     bool // cluster matches no node group
}

// NACK is the last rejection a node sent.
type NACK struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// callbacks implements serverv3.Callbacks for the control plane; it is its
// own type so that the ControlPlane API does not carry the callback methods.
type callbacks struct{ cp *ControlPlane }

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.cp.openStream(streamKey{id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.cp.closeStream(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.cp.openStream(streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.cp.closeStream(streamKey{delta: true, id: id})
}

// OnStreamRequest sees every state-of-the-world request; the server has
// already copied the stream's node into it.
func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	cp := c.cp
	cp.mu.Lock()
	defer cp.mu.Unlock()
	st := cp.identify(streamKey{id: id}, req.GetNode())
	if st == nil {
		return nil
	}
	typ := req.GetTypeUrl()
	nonce := req.GetResponseNonce()
	if nonce == "" {
		return nil // a first request or a new subscription
	}
	version, known := st.sent[typ][nonce]
	if detail := req.GetErrorDetail(); detail != nil {
		if !known {
			return nil // a stale nonce: the server ignores this request
		}
		cp.onNACK(st, typ, version, detail.GetMessage())
		// Hold: present the NACK to the cache as coming from a node at
		// the rejected version, so the cache waits for the next snapshot
		// (the rollback, or a fixed configuration) instead of answering
		// with the rejected resources again.
		req.VersionInfo = version
		return nil
	}
	if known && req.GetVersionInfo() == version {
		cp.onACK(st, typ, version)
	}
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.cp.noteSent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), true)
}

// OnStreamDeltaRequest sees every delta request. Unlike state of the world,
// it runs before the server fills in the node, and only a stream's first
// request carries one: identify remembers it per stream.
func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	cp := c.cp
	cp.mu.Lock()
	defer cp.mu.Unlock()
	st := cp.identify(streamKey{delta: true, id: id}, req.GetNode())
	if st == nil {
		return nil
	}
	typ := req.GetTypeUrl()
	nonce := req.GetResponseNonce()
	if nonce == "" {
		return nil
	}
	version, known := st.sent[typ][nonce]
	if !known {
		return nil
	}
	delete(st.sent[typ], nonce)
	if detail := req.GetErrorDetail(); detail != nil {
		// Delta needs no hold: the server records what it sent as the
		// node's state, so it does not resend by itself.
		cp.onNACK(st, typ, version, detail.GetMessage())
		return nil
	}
	cp.onACK(st, typ, version)
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.cp.noteSent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), false)
}

func (c callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

func (cp *ControlPlane) openStream(k streamKey) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.streams[k] = &streamState{sent: map[string]map[string]string{}}
	cp.metrics.streams.WithLabelValues(protocol(k)).Inc()
}

func (cp *ControlPlane) closeStream(k streamKey) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	st := cp.streams[k]
	if st == nil {
		return
	}
	delete(cp.streams, k)
	cp.metrics.streams.WithLabelValues(protocol(k)).Dec()
	if !st.known {
		return
	}
	if ns := cp.nodes[st.node]; ns != nil {
		ns.streams--
		ns.lastSeen = cp.now()
		if ns.streams == 0 {
			cp.metrics.connectedNodes.Dec()
		}
	}
}

// identify ties a stream to its node on the stream's first request.
func (cp *ControlPlane) identify(k streamKey, node *corev3.Node) *streamState {
	st := cp.streams[k]
	if st == nil {
		return nil
	}
	if st.known {
		return st
	}
	if node == nil {
		return st
	}
	st.known = true
	st.node = node.GetId()
	st.cluster = node.GetCluster()
	now := cp.now()
	ns := cp.nodes[st.node]
	if ns == nil {
		cp.pruneNodes(now)
		ns = &nodeState{id: st.node, acked: map[string]string{}, firstSeen: now}
		cp.nodes[st.node] = ns
	}
	ns.cluster = st.cluster
	ns.protocol = protocol(k)
	ns.lastSeen = now
	ns.streams++
	if ns.streams == 1 {
		cp.metrics.connectedNodes.Inc()
	}
	_, known := cp.groups[st.cluster]
	ns.unknown = !known
	if ns.unknown {
		cp.metrics.unknownClusters.Inc()
		cp.log.Warn("xDS node's cluster matches no node group: it gets no configuration",
			zap.String("node", st.node), zap.String("cluster", st.cluster))
	} else {
		cp.log.Info("xDS node connected", zap.String("node", st.node), zap.String("cluster", st.cluster),
			zap.String("protocol", protocol(k)))
	}
	return st
}

func (cp *ControlPlane) noteSent(k streamKey, typ, nonce, version string, onlyLatest bool) {
	cp.metrics.pushes.WithLabelValues(typeLabel(typ)).Inc()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	st := cp.streams[k]
	if st == nil {
		return
	}
	m := st.sent[typ]
	if m == nil || onlyLatest || len(m) > 32 {
		m = map[string]string{}
		st.sent[typ] = m
	}
	m[nonce] = version
}

func (cp *ControlPlane) onACK(st *streamState, typ, version string) {
	cp.metrics.acks.WithLabelValues(typeLabel(typ)).Inc()
	ns := cp.nodes[st.node]
	if ns == nil {
		return
	}
	ns.acked[typ] = version
	ns.lastSeen = cp.now()
	cp.noteACK(st.cluster, ns.acked)
}

func (cp *ControlPlane) onNACK(st *streamState, typ, version, message string) {
	cp.metrics.nacks.WithLabelValues(typeLabel(typ)).Inc()
	cp.log.Warn("xDS node rejected a response (NACK)", zap.String("node", st.node), zap.String("group", st.cluster),
		zap.String("type", typeLabel(typ)), zap.String("version", version), zap.String("message", message))
	if ns := cp.nodes[st.node]; ns != nil {
		ns.lastNACK = &NACK{Type: typeLabel(typ), Version: version, Message: message, Time: cp.now()}
		ns.lastSeen = cp.now()
	}
	cp.noteNACK(st.cluster, st.node, typ, version, message)
}

// pruneNodes forgets nodes that have been gone for a day, so a fleet that
// churns node ids does not grow the status page forever.
func (cp *ControlPlane) pruneNodes(now time.Time) {
	if len(cp.nodes) < 1024 {
		return
	}
	for id, ns := range cp.nodes {
		if ns.streams == 0 && now.Sub(ns.lastSeen) > 24*time.Hour {
			delete(cp.nodes, id)
		}
	}
}

func protocol(k streamKey) string {
	if k.delta {
		return "delta"
	}
	return "sotw"
}
