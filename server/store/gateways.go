package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Bounds of gateway_instances: a token with events:write could otherwise
// name a new node in every event, and every new node costs the ingest
// transaction a count and an insert. Instances already recorded keep
// being updated; new ones past a bound are not recorded (the gateways
// view says when the table is full).
const (
	// MaxGatewayInstances bounds the table.
	MaxGatewayInstances = 1000
	// MaxGatewayInstancesPerToken bounds what one token can add, so one
	// leaked token cannot fill the table for the others.
	MaxGatewayInstancesPerToken = 100
	// maxNewInstancesPerBatch bounds the inserts one batch makes.
	maxNewInstancesPerBatch = 8
)

// Sender is who delivered a batch of events: the User-Agent of the
// request (a gateway's webhook sink sends "mcc-webhook/1 mcc/<version>")
// and the name of the token it carried.
type Sender struct {
	Agent string
	Token string
}

// GatewayInstance is one gateway instance as its events show it.
type GatewayInstance struct {
	Gateway     string // caddy, envoy (mcc authz) or server
	Node        string
	Agent       string // User-Agent of its last delivery
	TokenName   string // token of its last delivery
	FirstSeen   time.Time
	LastSeen    time.Time // when the server last stored a batch from it
	LastEvent   time.Time // the newest event's own time
	LastEventID string
	Events      int64 // events stored from it (duplicates not counted)
}

type gatewayKey struct{ gateway, node string }

// gatewaySeen is what one batch says of one instance.
type gatewaySeen struct {
	inserted int64
	lastNS   int64 // the newest new event (0 and "" when none was new)
	lastID   string
}

type gatewaysSeen map[gatewayKey]*gatewaySeen

// add counts e for its instance; fresh is whether e was new.
func (g gatewaysSeen) add(e *Event, fresh bool) {
	if e.Gateway == "" {
		return
	}
	k := gatewayKey{e.Gateway, e.Node}
	s := g[k]
	if s == nil {
		s = &gatewaySeen{}
		g[k] = s
	}
	if !fresh {
		return
	}
	s.inserted++
	if ns := NS(e.Time); s.lastID == "" || ns > s.lastNS || (ns == s.lastNS && e.ID > s.lastID) {
		s.lastNS, s.lastID = ns, e.ID
	}
}

// record upserts the batch's instances, in key order (two instances'
// transactions lock rows in the same order on PostgreSQL).
func (g gatewaysSeen) record(ctx context.Context, tx *Tx, from Sender, received time.Time) error {
	keys := make([]gatewayKey, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b gatewayKey) int {
		return cmp.Or(strings.Compare(a.gateway, b.gateway), strings.Compare(a.node, b.node))
	})
	now := NS(received)
	// The counts are read once a batch, and only when it names an
	// instance not recorded yet.
	counted := false
	var total, ofToken, added int
	for _, k := range keys {
		s := g[k]
		// The newest event moves only forward: a late batch of old events
		// does not replace it. (A batch of duplicates only has lastNS 0,
		// never newer.)
		res, err := tx.Exec(ctx, `UPDATE gateway_instances SET agent = ?, last_seen_ns = ?, events = events + ?,
			last_event_id = CASE WHEN ? > last_event_ns THEN ? ELSE last_event_id END,
			last_event_ns = CASE WHEN ? > last_event_ns THEN ? ELSE last_event_ns END
			WHERE gateway = ? AND node = ? AND token_name = ?`,
			from.Agent, now, s.inserted, s.lastNS, s.lastID, s.lastNS, s.lastNS, k.gateway, k.node, from.Token)
		if err != nil {
			return fmt.Errorf("gateways: updating %s %q: %w", k.gateway, k.node, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("gateways: updating %s %q: %w", k.gateway, k.node, err)
		}
		if n > 0 || added >= maxNewInstancesPerBatch {
			continue
		}
		if !counted {
			if err := tx.QueryRow(ctx, `SELECT COUNT(*), COUNT(CASE WHEN token_name = ? THEN 1 END) FROM gateway_instances`,
				from.Token).Scan(&total, &ofToken); err != nil {
				return fmt.Errorf("gateways: counting: %w", err)
			}
			counted = true
		}
		if total >= MaxGatewayInstances || ofToken >= MaxGatewayInstancesPerToken {
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO gateway_instances (gateway, node, agent, token_name, first_seen_ns, last_seen_ns,
			last_event_ns, last_event_id, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, node, token_name) DO NOTHING`,
			k.gateway, k.node, from.Agent, from.Token, now, now, s.lastNS, s.lastID, s.inserted); err != nil {
			return fmt.Errorf("gateways: recording %s %q: %w", k.gateway, k.node, err)
		}
		total, ofToken, added = total+1, ofToken+1, added+1
	}
	return nil
}

// GatewayInstanceCount is how many instances are recorded.
func (db *DB) GatewayInstanceCount(ctx context.Context) (int, error) {
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_instances`).Scan(&n); err != nil {
		return 0, fmt.Errorf("gateways: counting: %w", err)
	}
	return n, nil
}

// GatewayInstances lists the recorded instances, the most recently heard
// from first, at most limit.
func (db *DB) GatewayInstances(ctx context.Context, limit int) ([]GatewayInstance, error) {
	rows, err := db.Query(ctx, `SELECT gateway, node, agent, token_name, first_seen_ns, last_seen_ns, last_event_ns, last_event_id, events
		FROM gateway_instances ORDER BY last_seen_ns DESC, gateway, node LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("gateways: listing: %w", err)
	}
	defer rows.Close()
	var out []GatewayInstance
	for rows.Next() {
		var g GatewayInstance
		var first, last, ev int64
		if err := rows.Scan(&g.Gateway, &g.Node, &g.Agent, &g.TokenName, &first, &last, &ev, &g.LastEventID, &g.Events); err != nil {
			return nil, fmt.Errorf("gateways: reading a row: %w", err)
		}
		g.FirstSeen, g.LastSeen = Time(first), Time(last)
		if g.LastEventID != "" {
			g.LastEvent = Time(ev)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// PurgeGateways forgets instances not heard from since before.
func (db *DB) PurgeGateways(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.Exec(ctx, `DELETE FROM gateway_instances WHERE last_seen_ns < ?`, NS(before))
	if err != nil {
		return 0, fmt.Errorf("gateways: purging: %w", err)
	}
	return res.RowsAffected()
}
