package serve

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mccgate/mcc/internal/secure"
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
	// ids are the identities of the connection's verified client
	// certificate; verified is false without one (plaintext, or TLS
	// without --client-ca).
	ids      []string
	verified bool
	// guard refuses every later send once the stream lost its right to
	// the group (a new configuration dropped its peer).
	guard *streamGuard
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

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.cp.openStream(ctx, streamKey{id: id})
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.cp.closeStream(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.cp.openStream(ctx, streamKey{delta: true, id: id})
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
	st, err := cp.identify(streamKey{id: id}, req.GetNode())
	if err != nil {
		return err // closes the stream before anything is sent for this request
	}
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
	st, err := cp.identify(streamKey{delta: true, id: id}, req.GetNode())
	if err != nil {
		return err
	}
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

// OnFetchRequest guards the unary Fetch* RPCs (REST-style xDS over gRPC)
// exactly like a stream: the caller's certificate must be a peer of the
// group its node names. Envoy does not use them over gRPC.
func (c callbacks) OnFetchRequest(ctx context.Context, req *discoveryv3.DiscoveryRequest) error {
	cp := c.cp
	ids, verified := secure.PeerIdentities(ctx)
	st := &streamState{ids: ids, verified: verified}
	if err := checkNode(req.GetNode()); err != nil {
		return cp.refuse(st, "invalid_node", err)
	}
	st.node, st.cluster = req.GetNode().GetId(), req.GetNode().GetCluster()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if reason, err := cp.admit(st); err != nil {
		return cp.refuse(st, reason, err)
	}
	return nil
}

func (c callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// openStream registers a stream with the identities of its connection's
// client certificate. Beyond MaxStreams open streams, new ones are refused.
func (cp *ControlPlane) openStream(ctx context.Context, k streamKey) error {
	ids, verified := secure.PeerIdentities(ctx)
	guard, _ := ctx.Value(guardKey{}).(*streamGuard)
	if guard == nil {
		guard = &streamGuard{} // served without the interceptor: requests are still checked
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.streams) >= cp.maxStreams {
		st := &streamState{ids: ids, verified: verified}
		return cp.refuse(st, "limit", status.Errorf(codes.ResourceExhausted,
			"mcc xds serves at most %d xDS streams at once", cp.maxStreams))
	}
	cp.streams[k] = &streamState{sent: map[string]map[string]string{}, ids: ids, verified: verified, guard: guard}
	cp.metrics.streams.WithLabelValues(protocol(k)).Inc()
	return nil
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

// maxNodeField bounds a node's id and cluster: they are map keys, log
// fields and status page entries.
const maxNodeField = 1024

func checkNode(node *corev3.Node) error {
	if node == nil {
		return status.Error(codes.InvalidArgument, "the first request of a stream must carry the node")
	}
	if len(node.GetId()) > maxNodeField || len(node.GetCluster()) > maxNodeField {
		return status.Errorf(codes.InvalidArgument, "node id and cluster may have at most %d bytes", maxNodeField)
	}
	return nil
}

// identify ties a stream to its node on the stream's first request, admits
// it (or not) to the node group its cluster names, and checks every later
// request: a request naming another node, or a stream whose certificate is
// no longer a peer of the group, ends the stream. Nothing is sent on a
// refused stream, and its ACKs and NACKs are never counted.
func (cp *ControlPlane) identify(k streamKey, node *corev3.Node) (*streamState, error) {
	st := cp.streams[k]
	if st == nil {
		return nil, nil
	}
	if st.known {
		if node != nil && (node.GetId() != st.node || node.GetCluster() != st.cluster) {
			return nil, cp.refuse(st, "node_changed", status.Errorf(codes.PermissionDenied,
				"the stream is bound to node %q of cluster %q; it cannot change node", st.node, st.cluster))
		}
		if reason, err := cp.admit(st); err != nil {
			return nil, cp.refuse(st, reason, err)
		}
		return st, nil
	}
	if node == nil {
		if st.verified || cp.anyPeers() {
			// Nothing may be served before the stream says who it is.
			return nil, cp.refuse(st, "invalid_node", checkNode(nil))
		}
		return st, nil
	}
	if err := checkNode(node); err != nil {
		return nil, cp.refuse(st, "invalid_node", err)
	}
	st.node = node.GetId()
	st.cluster = node.GetCluster()
	if reason, err := cp.admit(st); err != nil {
		return nil, cp.refuse(st, reason, err)
	}
	now := cp.now()
	ns := cp.nodes[st.node]
	if ns == nil {
		if !cp.makeRoomForNode(now) {
			return nil, cp.refuse(st, "limit", status.Errorf(codes.ResourceExhausted,
				"mcc xds tracks at most %d nodes and all of them are connected", cp.maxNodes))
		}
		ns = &nodeState{id: st.node, acked: map[string]string{}, firstSeen: now}
		cp.nodes[st.node] = ns
	}
	st.known = true
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
			zap.String("protocol", protocol(k)), zap.Strings("peer", st.ids))
	}
	return st, nil
}

// admit decides whether a stream may act as a node of st.cluster:
//
//   - with a verified client certificate, one of its identities must be
//     among the group's peers; a group without peers, or a cluster that is
//     no group, is refused;
//   - without one (plaintext or TLS without client certificates, which
//     mcc xds allows only on loopback or with --insecure-plaintext), a
//     group that lists peers is refused, since nobody can prove to be one;
//     a group without peers is served, and an unknown cluster gets nothing
//     (flagged on /status), as every local process is trusted.
//
// It returns the refusal's metric reason and a PermissionDenied error.
func (cp *ControlPlane) admit(st *streamState) (string, error) {
	gs := cp.groups[st.cluster]
	var peers []string
	if gs != nil {
		peers = gs.peers
	}
	if !st.verified {
		if len(peers) > 0 {
			return "no_certificate", status.Errorf(codes.PermissionDenied,
				"node group %q accepts only its peers' client certificates, and this connection presented none", st.cluster)
		}
		return "", nil
	}
	switch {
	case gs == nil || gs.current == nil:
		return "unknown_group", status.Errorf(codes.PermissionDenied, "node cluster %q is no node group", st.cluster)
	case len(peers) == 0:
		return "not_a_peer", status.Errorf(codes.PermissionDenied,
			"node group %q lists no peers, so no client certificate may act as it", st.cluster)
	case !secure.Allowed(st.ids, peers):
		return "not_a_peer", status.Errorf(codes.PermissionDenied,
			"client certificate %s is not a peer of node group %q", describeIDs(st.ids), st.cluster)
	}
	return "", nil
}

// anyPeers reports whether some node group lists peers: then even a
// plaintext stream must name its node before it gets anything.
func (cp *ControlPlane) anyPeers() bool {
	for _, gs := range cp.groups {
		if len(gs.peers) > 0 {
			return true
		}
	}
	return false
}

// refuse counts and logs a refused stream and returns err for the server,
// which ends the stream with it.
func (cp *ControlPlane) refuse(st *streamState, reason string, err error) error {
	cp.metrics.refused.WithLabelValues(reason).Inc()
	if st.guard != nil {
		st.guard.revoke(err)
	}
	cp.log.Warn("xDS stream refused", zap.String("reason", reason), zap.String("node", clip(st.node, 256)),
		zap.String("cluster", clip(st.cluster, 256)), zap.Strings("peer", st.ids), zap.Bool("client_certificate", st.verified),
		zap.String("error", status.Convert(err).Message()))
	return err
}

func describeIDs(ids []string) string {
	if len(ids) == 0 {
		return "(no identity)"
	}
	return fmt.Sprintf("%q", clip(ids[0], 256))
}

// makeRoomForNode keeps the node table within MaxNodes: it forgets the
// disconnected node seen longest ago. It reports false when every tracked
// node is connected.
func (cp *ControlPlane) makeRoomForNode(now time.Time) bool {
	cp.pruneNodes(now)
	if len(cp.nodes) < cp.maxNodes {
		return true
	}
	var oldest *nodeState
	for _, ns := range cp.nodes {
		if ns.streams == 0 && (oldest == nil || ns.lastSeen.Before(oldest.lastSeen)) {
			oldest = ns
		}
	}
	if oldest == nil {
		return false
	}
	delete(cp.nodes, oldest.id)
	return true
}

// clip cuts s to at most n bytes on a UTF-8 boundary, saying so.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… [truncated, %d bytes in all]", len(s))
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
	// An Envoy's NACK names the failing resources in a few hundred bytes;
	// the rest of a longer one is not kept (status page, log, rejected).
	message = clip(message, cp.maxNACKDetail)
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
