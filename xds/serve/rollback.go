package serve

import (
	"context"

	"go.uber.org/zap"
)

// Why rollback: go-control-plane's snapshot cache answers a NACK (which
// carries the last version the node accepted) with the snapshot's version,
// that is, the very resources just rejected, at once and forever: thousands
// of NACKs a second per node. Two things stop that here:
//
//  1. hold: the NACKed request is handed to the cache as if the node were at
//     the rejected version, so the cache waits for a new snapshot instead of
//     resending (see callbacks.OnStreamRequest);
//  2. rollback: the node group goes back to the newest snapshot that some
//     node accepted entirely and none rejected, which every watch then
//     receives. The rejected resources (type and version) are remembered and
//     never published again for the group; a new configuration (a fixed
//     file) publishes normally.

// noteACK is called after a node of cluster ACKed a response; acked holds
// the node's accepted version by type URL. A snapshot the node now holds
// entirely becomes a rollback target.
func (cp *ControlPlane) noteACK(cluster string, acked map[string]string) {
	gs := cp.groups[cluster]
	if gs == nil || gs.current == nil || !gs.current.acceptedBy(acked) {
		return
	}
	if _, _, bad := gs.holdsRejected(gs.current); bad {
		return // another node rejected part of it: not a rollback target
	}
	gs.lastACKed = gs.current.id
	for i, s := range gs.good {
		if s == gs.current {
			gs.good = append(gs.good[:i], gs.good[i+1:]...)
			break
		}
	}
	gs.good = append(gs.good, gs.current)
	if len(gs.good) > cp.keepGood {
		gs.good = gs.good[len(gs.good)-cp.keepGood:]
	}
}

// noteNACK records that a node of cluster rejected version of type typ and,
// if the group's current snapshot holds it, rolls the group back. It runs
// inside a stream's callback, so the cache is updated from another
// goroutine.
func (cp *ControlPlane) noteNACK(cluster, node, typ, version, message string) {
	gs := cp.groups[cluster]
	if gs == nil || version == "" {
		return
	}
	if len(gs.rejected) >= 64 { // bound the memory a flapping config can take
		for k := range gs.rejected {
			delete(gs.rejected, k)
			break
		}
	}
	gs.rejected[typ+" "+version] = message
	kept := gs.good[:0]
	for _, s := range gs.good {
		if s.versions[typ] != version {
			kept = append(kept, s)
		}
	}
	gs.good = kept
	if gs.current == nil || gs.current.versions[typ] != version {
		return // already replaced by a newer configuration or a rollback
	}
	if len(gs.good) == 0 {
		cp.log.Error("node rejected the snapshot and no earlier accepted snapshot exists: holding until the configuration changes",
			zap.String("group", cluster), zap.String("node", node), zap.String("snapshot", gs.current.id),
			zap.String("type", typeLabel(typ)), zap.String("version", version), zap.String("nack", message))
		return
	}
	target := gs.good[len(gs.good)-1]
	gs.rolledBackFrom = gs.current.id
	gs.rolledBackAt = cp.now()
	gs.current = target
	cp.metrics.rollbacks.Inc()
	cp.log.Error("node rejected the snapshot: rolling the node group back to its last accepted snapshot",
		zap.String("group", cluster), zap.String("node", node), zap.String("rejected_snapshot", gs.rolledBackFrom),
		zap.String("type", typeLabel(typ)), zap.String("version", version),
		zap.String("rollback_snapshot", target.id), zap.String("nack", message))
	go cp.applyRollback(cluster, target)
}

func (cp *ControlPlane) applyRollback(cluster string, target *snapshot) {
	cp.publishMu.Lock()
	defer cp.publishMu.Unlock()
	cp.mu.Lock()
	still := cp.groups[cluster] != nil && cp.groups[cluster].current == target
	cp.mu.Unlock()
	if !still {
		return // a newer configuration was published meanwhile
	}
	if err := cp.cache.set(context.WithoutCancel(cp.ctx), cluster, target); err != nil {
		cp.log.Warn("setting rollback snapshot", zap.String("group", cluster), zap.Error(err))
	}
}

// holdsRejected reports a type of s whose resources a node rejected.
func (gs *groupState) holdsRejected(s *snapshot) (typ, message string, bad bool) {
	for t, v := range s.versions {
		if msg, ok := gs.rejected[t+" "+v]; ok {
			return t, msg, true
		}
	}
	return "", "", false
}
