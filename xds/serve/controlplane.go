// Package serve runs the xDS side of mcc: ADS over gRPC (state of the world
// and delta) from go-control-plane snapshot caches (one per resource type,
// see typecache.go) with one snapshot per node group, checks every snapshot
// before it is published, versions each resource by its bytes (so delta
// clients get exactly what changed), rolls a node group back when a node
// rejects (NACKs) its snapshot, and serves an admin port with health,
// Prometheus metrics and per-node status.
//
// A node group is served only to the client certificates its peers name
// (see ControlPlane.admit): a stream that may not act as the group its node
// names is ended before anything is sent, and its ACKs and NACKs never
// count. The node table, the streams, request sizes and the NACK detail
// kept are bounded (Options, ServerOptions).
//
// It knows nothing about fusion sets: it publishes whatever resources it is
// given, grouped by Envoy node cluster.
package serve

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/xds/validate"
)

// Resources are one node group's resources by type URL.
type Resources = map[resourcev3.Type][]types.Resource

// ClusterHash keys snapshots by the Envoy node's cluster (its node group),
// so that every Envoy of a group shares one snapshot, whatever its node id.
type ClusterHash struct{}

// ID implements cachev3.NodeHash.
func (ClusterHash) ID(node *corev3.Node) string { return node.GetCluster() }

// Options configure a ControlPlane.
type Options struct {
	Logger *zap.Logger
	// Validate checks one resource before publication; nil means
	// validate.Message (every protoc-gen-validate rule, through Any).
	Validate func(types.Resource) error
	// KeepGood is how many ACKed snapshots each group remembers as rollback
	// targets (default 4).
	KeepGood int
	// Clock stamps the status page; nil means time.Now.
	Clock func() time.Time
	// MaxNodes bounds the node table of the status page (default
	// DefaultMaxNodes). When it is full, the disconnected node seen
	// longest ago is forgotten; when every tracked node is connected, a new
	// node is refused (ResourceExhausted).
	MaxNodes int
	// MaxStreams bounds the xDS streams open at once, over all connections
	// (default DefaultMaxStreams); more are refused (ResourceExhausted).
	MaxStreams int
	// MaxNACKDetail is how many bytes of a NACK's error_detail message are
	// kept for the status page and the log (default DefaultMaxNACKDetail).
	MaxNACKDetail int
}

// Defaults of Options and of ServerOptions: far above what a fleet of
// Envoys needs (one ADS stream each, small requests), far below what would
// let one client exhaust the control plane.
const (
	DefaultMaxNodes                = 4096
	DefaultMaxStreams              = 4096
	DefaultMaxNACKDetail           = 2048
	DefaultMaxStreamsPerConnection = 16
	DefaultMaxRecvMsgSize          = 1 << 20
)

// ControlPlane holds the snapshot cache, the xDS server and the state the
// status page and the NACK rollback need.
type ControlPlane struct {
	log      *zap.Logger
	facts    *factsCache
	keepGood int
	// limits (Options)
	maxNodes, maxStreams, maxNACKDetail int
	now                                 func() time.Time
	cache                               *typeCaches
	server                              serverv3.Server
	metrics                             *metrics
	ctx                                 context.Context

	// publishMu orders every SetSnapshot (publications and rollbacks), so a
	// late rollback can never overwrite a newer configuration.
	publishMu sync.Mutex

	mu      sync.Mutex // guards everything below
	groups  map[string]*groupState
	nodes   map[string]*nodeState
	streams map[streamKey]*streamState
	config  configState
}

// groupState is what the control plane knows about one node group.
type groupState struct {
	current     *snapshot
	publishedAt time.Time
	// good are snapshots some node accepted entirely and none rejected,
	// newest last: the rollback targets.
	good []*snapshot
	// rejected maps "<type URL> <version>" of resources a node NACKed to
	// the NACK message; a snapshot holding them is never published again
	// for this group.
	rejected       map[string]string
	lastACKed      string
	rolledBackFrom string
	rolledBackAt   time.Time
	// peers are the client certificate identities that may act as the
	// group (Update.Peers).
	peers []string
}

type configState struct {
	warnings    []string
	version     string
	loadedAt    time.Time
	lastError   string
	lastErrorAt time.Time
}

// New returns a control plane whose xDS server lives as long as ctx.
func New(ctx context.Context, o Options) *ControlPlane {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Validate == nil {
		o.Validate = func(r types.Resource) error { return validate.Message(r) }
	}
	if o.KeepGood <= 0 {
		o.KeepGood = 4
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = DefaultMaxNodes
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.MaxNACKDetail <= 0 {
		o.MaxNACKDetail = DefaultMaxNACKDetail
	}
	cp := &ControlPlane{
		log:      o.Logger,
		facts:    newFactsCache(o.Validate),
		keepGood: o.KeepGood,
		now:      o.Clock,

		maxNodes:      o.MaxNodes,
		maxStreams:    o.MaxStreams,
		maxNACKDetail: o.MaxNACKDetail,
		metrics:       newMetrics(),
		ctx:           ctx,
		groups:        map[string]*groupState{},
		nodes:         map[string]*nodeState{},
		streams:       map[streamKey]*streamState{},
	}
	cp.cache = newTypeCaches(func() cachev3.SnapshotCache {
		return cachev3.NewSnapshotCache(true, ClusterHash{}, zapCacheLogger{o.Logger.Named("cache")})
	}, cp.facts.marshaled)
	cp.server = serverv3.NewServer(ctx, cp.cache.mux, callbacks{cp})
	return cp
}

// Update is one configuration to publish.
type Update struct {
	// ConfigVersion identifies the configuration on the status page.
	ConfigVersion string
	// Groups maps node cluster to that group's resources. A group that was
	// published before and is missing now gets an empty snapshot: its
	// Envoys drop their listeners, as the file says.
	Groups map[string]Resources
	// Started is when building the configuration began (file read); the
	// build-time histogram measures from it. Zero means now.
	Started time.Time
	// Peers maps node cluster to the client certificate identities that
	// may act as that group (see ControlPlane.admit). Streams that lose
	// their right with this update are ended.
	Peers map[string][]string
	// Warnings about the configuration that did not stop it (CRLs expired
	// or close to expiry), shown on the status page.
	Warnings []string
}

// Publish checks every group's snapshot (the references between its
// resources, as Snapshot.Consistent and more, and deep validation of every
// resource) and, only if all pass, publishes them. What it learns about a
// resource is kept while the resource stays published, so a resource
// handed again (the same proto, as translate.Translator returns for
// unchanged inputs) is not marshalled, hashed or validated again: the
// resources must not change once handed to Publish. A
// group whose resources did not change is left alone; a group whose new
// version a node already rejected is not resent. On error nothing is
// published and the previous snapshots keep serving.
func (cp *ControlPlane) Publish(ctx context.Context, u Update) error {
	if u.Started.IsZero() {
		u.Started = time.Now()
	}
	snaps := make(map[string]*snapshot, len(u.Groups))
	var errs []error
	cp.facts.mu.Lock()
	cp.facts.begin()
	for _, cluster := range sortedKeys(u.Groups) {
		snap, err := cp.buildSnapshot(cluster, u.Groups[cluster])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snaps[cluster] = snap
	}
	if len(errs) > 0 {
		cp.facts.abort()
	} else {
		cp.facts.end()
	}
	cp.facts.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		cp.ConfigError(err)
		return err
	}

	cp.publishMu.Lock()
	defer cp.publishMu.Unlock()
	cp.mu.Lock()
	// Peers first, and the streams that lost their right cut off, before
	// any new snapshot can reach them.
	for _, cluster := range sortedKeys(snaps) {
		cp.group(cluster).peers = append([]string(nil), u.Peers[cluster]...)
	}
	for cluster, gs := range cp.groups {
		if _, ok := snaps[cluster]; !ok {
			gs.peers = nil
		}
	}
	cp.revokeStreams()
	for cluster := range cp.groups {
		if _, ok := snaps[cluster]; !ok && cp.groups[cluster].current != nil {
			snaps[cluster] = emptySnapshot()
		}
	}
	var set []string
	for _, cluster := range sortedKeys(snaps) {
		snap := snaps[cluster]
		gs := cp.group(cluster)
		if gs.current != nil && gs.current.id == snap.id {
			continue
		}
		if typ, msg, bad := gs.holdsRejected(snap); bad {
			cp.log.Warn("not resending resources a node already rejected",
				zap.String("group", cluster), zap.String("type", typeLabel(typ)),
				zap.String("version", snap.versions[typ]), zap.String("nack", msg))
			continue
		}
		gs.current = snap
		gs.publishedAt = cp.now()
		set = append(set, cluster)
	}
	cp.config.version = u.ConfigVersion
	cp.config.loadedAt = cp.now()
	cp.config.lastError = ""
	cp.config.lastErrorAt = time.Time{}
	cp.config.warnings = append([]string(nil), u.Warnings...)
	cp.mu.Unlock()

	for _, cluster := range set {
		if err := cp.cache.set(ctx, cluster, snaps[cluster]); err != nil {
			// Only a closed watch channel makes this fail; the snapshot is
			// stored regardless and served to the next request.
			cp.log.Warn("setting snapshot", zap.String("group", cluster), zap.Error(err))
		}
		cp.log.Info("published snapshot", zap.String("group", cluster),
			zap.String("version", snaps[cluster].id),
			zap.String("config_version", u.ConfigVersion))
	}
	cp.metrics.publishes.Inc()
	cp.metrics.buildSeconds.Observe(time.Since(u.Started).Seconds())
	return nil
}

// revokeStreams ends the identified streams whose certificate is no longer
// a peer of their group: their next send fails, and so does their next
// request.
func (cp *ControlPlane) revokeStreams() {
	for _, st := range cp.streams {
		if !st.known {
			continue
		}
		if reason, err := cp.admit(st); err != nil {
			_ = cp.refuse(st, reason, err)
		}
	}
}

// buildSnapshot versions, assembles and checks one group's snapshot. The
// caller holds cp.facts.mu.
func (cp *ControlPlane) buildSnapshot(cluster string, res Resources) (*snapshot, error) {
	snap, err := newSnapshot(res, cp.facts.facts)
	if err != nil {
		return nil, fmt.Errorf("node group %q: %w", cluster, err)
	}
	if err := checkReferences(res, cp.facts.facts); err != nil {
		return nil, fmt.Errorf("node group %q: inconsistent snapshot: %w", cluster, err)
	}
	var errs []error
	for _, typ := range sortedKeys(res) {
		for _, r := range res[typ] {
			if err := cp.facts.facts(r).validErr; err != nil {
				errs = append(errs, fmt.Errorf("node group %q: %s %q: %w", cluster, typeLabel(typ), cachev3.GetResourceName(r), err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return snap, nil
}

// ConfigError records a configuration that was refused; the last good
// snapshots keep serving. It shows on /status and in the metrics.
func (cp *ControlPlane) ConfigError(err error) {
	cp.metrics.configErrors.Inc()
	cp.mu.Lock()
	cp.config.lastError = err.Error()
	cp.config.lastErrorAt = cp.now()
	cp.mu.Unlock()
}

// Snapshot returns the snapshot currently served to a node group.
func (cp *ControlPlane) Snapshot(cluster string) (cachev3.ResourceSnapshot, error) {
	return cp.cache.get(cluster)
}

// Version returns the id of the snapshot the control plane means to serve
// to a node group (the status page's group version), or "".
func (cp *ControlPlane) Version(cluster string) string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if gs := cp.groups[cluster]; gs != nil && gs.current != nil {
		return gs.current.id
	}
	return ""
}

func (cp *ControlPlane) group(cluster string) *groupState {
	gs := cp.groups[cluster]
	if gs == nil {
		gs = &groupState{rejected: map[string]string{}}
		cp.groups[cluster] = gs
	}
	return gs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
