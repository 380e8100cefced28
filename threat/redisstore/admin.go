package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mccgate/mcc/threat"
)

var _ threat.BanAdmin = (*Store)(nil)

// scanBatch is the COUNT hint of each SCAN step of the admin calls.
const scanBatch = 500

// Bans implements threat.BanAdmin. It SCANs the ban keys (of ns, or of every
// set when ns is "") and reads each one's remaining time and score: an
// operator's call, bounded by ctx and the client's timeouts, never by the
// request path's breaker.
func (s *Store) Bans(ctx context.Context, ns string) ([]threat.Ban, error) {
	pattern := keyPrefix + ns + "}:ban:*"
	if ns == "" {
		pattern = keyPrefix + "*}:ban:*"
	}
	bans, err := s.scanBans(ctx, pattern, nil)
	if err != nil {
		return nil, fmt.Errorf("redis store: listing bans: %w", err)
	}
	threat.SortBans(bans)
	return bans, nil
}

// Lift implements threat.BanAdmin: it deletes the ban key and the score key
// of every banned subject of ns that value names (see threat.SubjectMatches).
func (s *Store) Lift(ctx context.Context, ns string, kind threat.SubjectKind, value string) ([]threat.Ban, error) {
	if int(kind) >= len(subjectParts) {
		return nil, fmt.Errorf("redis store: lifting a ban: unknown subject kind %d", kind)
	}
	if ns == "" || value == "" {
		return nil, fmt.Errorf("redis store: lifting a ban: a fusion set and a value are required")
	}
	part := subjectParts[kind]
	var bans []threat.Ban
	var err error
	if kind == threat.SubjectAddress {
		// An address may name a banned prefix it lies in: look at every
		// banned address of the set.
		bans, err = s.scanBans(ctx, keyPrefix+ns+"}:ban:"+part+":*", func(b threat.Ban) bool {
			return threat.SubjectMatches(kind, b.Value, value)
		})
	} else {
		bans, err = s.readBans(ctx, []string{banKey(ns, part, value)}, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("redis store: lifting a ban: %w", err)
	}
	if len(bans) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, 2*len(bans))
	for _, b := range bans {
		// b.Value is the key's value as stored (already a digest when
		// long), so the keys are spelled exactly as Add wrote them.
		keys = append(keys, keyPrefix+b.Set+"}:ban:"+part+":"+b.Value, keyPrefix+b.Set+"}:score:"+part+":"+b.Value)
	}
	// All keys of a set share its hash slot, so one DEL removes them.
	if err := s.client.Del(ctx, keys...).Err(); err != nil {
		return nil, fmt.Errorf("redis store: lifting a ban: %w", err)
	}
	threat.SortBans(bans)
	return bans, nil
}

// scanBans reads every live ban whose key matches pattern and keep accepts.
func (s *Store) scanBans(ctx context.Context, pattern string, keep func(threat.Ban) bool) ([]threat.Ban, error) {
	var out []threat.Ban
	var cursor uint64
	for {
		keys, next, err := s.client.Scan(ctx, cursor, pattern, scanBatch).Result()
		if err != nil {
			return nil, err
		}
		bans, err := s.readBans(ctx, keys, keep)
		if err != nil {
			return nil, err
		}
		out = append(out, bans...)
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// readBans reads the remaining time and the score of each ban key, in one
// pipelined round trip, and returns the live ones that keep accepts. Keys
// that are not this package's ban keys are skipped.
func (s *Store) readBans(ctx context.Context, keys []string, keep func(threat.Ban) bool) ([]threat.Ban, error) {
	type item struct {
		ban  threat.Ban
		part string
	}
	items := make([]item, 0, len(keys))
	for _, k := range keys {
		b, part, ok := parseBanKey(k)
		if !ok || (keep != nil && !keep(b)) {
			continue
		}
		items = append(items, item{b, part})
	}
	if len(items) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	ttls := make([]*redis.DurationCmd, len(items))
	scores := make([]*redis.StringCmd, len(items))
	for i, it := range items {
		ttls[i] = pipe.PTTL(ctx, keys0(it.ban, it.part, "ban"))
		scores[i] = pipe.Get(ctx, keys0(it.ban, it.part, "score"))
	}
	// Exec reports the first failed command, and a missing score key is
	// a failed GET (redis.Nil): look at each command instead.
	_, _ = pipe.Exec(ctx)
	now := s.now()
	out := make([]threat.Ban, 0, len(items))
	for i, it := range items {
		ttl, err := ttls[i].Result()
		if err != nil {
			return nil, err
		}
		if ttl <= 0 {
			continue // expired between SCAN and PTTL, or never had a TTL
		}
		b := it.ban
		b.Until = now.Add(ttl)
		switch n, err := scores[i].Int(); {
		case err == nil:
			b.Score = n
		case !errors.Is(err, redis.Nil):
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// keys0 spells the ban or score key of b.
func keys0(b threat.Ban, part, what string) string {
	return keyPrefix + b.Set + "}:" + what + ":" + part + ":" + b.Value
}

// parseBanKey splits "mcc:{<set>}:ban:<part>:<value>".
func parseBanKey(k string) (threat.Ban, string, bool) {
	rest, ok := strings.CutPrefix(k, keyPrefix)
	if !ok {
		return threat.Ban{}, "", false
	}
	set, rest, ok := strings.Cut(rest, "}:ban:")
	if !ok || set == "" {
		return threat.Ban{}, "", false
	}
	part, value, ok := strings.Cut(rest, ":")
	if !ok || value == "" {
		return threat.Ban{}, "", false
	}
	for kind, p := range subjectParts {
		if p == part {
			return threat.Ban{Set: set, Kind: threat.SubjectKind(kind), Value: value}, part, true
		}
	}
	return threat.Ban{}, "", false
}
