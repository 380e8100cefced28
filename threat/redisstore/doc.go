// Package redisstore is the threat.Store that gateways share: scores and
// fail-safe bans live in Redis, so a client banned by one gateway (Caddy or
// Envoy's `mcc authz`) is banned by every gateway on the same Redis.
//
// # Key layout
//
// Every key of a fusion set sits under the set id in a Redis Cluster hash tag,
// so that all of a subject's keys hash to one slot and a script may touch them
// together:
//
//	mcc:{<set>}:score:ip:<client address>  running score, expires at the end of its window
//	mcc:{<set>}:score:dev:<device id>
//	mcc:{<set>}:score:cert:<leaf sha256>
//	mcc:{<set>}:ban:ip:<client ip>         "1" while banned, expires with the ban (PX)
//	mcc:{<set>}:ban:dev:<device id>
//	mcc:{<set>}:ban:cert:<leaf sha256>
//	mcc:{<set>}:clone:<window start ms>:addr:<leaf sha256>    HyperLogLog of the addresses that used it
//	mcc:{<set>}:clone:<window start ms>:dev:<leaf sha256>     HyperLogLog of its device ids
//	mcc:{<set>}:clone:<window start ms>:rep:<leaf sha256>     hash: highest report levels (a, d)
//	mcc:{<set>}:clone:<window start ms>:sample:<leaf sha256>  list: the window's first addresses
//	mcc:{<set>}:clone:key                                     the set's random clone hashing key
//
// The clone keys are clone detection's (threat.CloneCounter): windows are
// aligned to the clock, so every gateway names the same keys, and each key
// expires at its window's end (PEXPIRE with the time left). A HyperLogLog costs Redis at most
// 12 KiB, and far less (its sparse form) while it counts a few hundred.
//
// The client address is what the fusion engine scores (threat.AddressKey):
// an IPv4 address, or a prefix ("2001:db8:1:2::/64" for IPv6 by default,
// "192.0.2.0/24" when a set aggregates IPv4).
//
// A value longer than MaxKeyValue bytes (a device id is whatever a client
// sends) is replaced by "sha256:" and its hex digest, so a client cannot make
// keys of any size.
//
// # Round trips
//
// Add is one EVALSHA (EVAL when the script is not cached): for each of the
// subject's keys it adds to the score, starts the window on the first score
// (PEXPIRE when the key has no expiry yet: a fixed window, like
// threat.MemoryStore), and sets the ban key with PX when the total reaches the
// threshold and no ban is live. Banned is one EVALSHA returning the longest
// PTTL among the ban keys; for a set with clone detection, BannedCounting is
// one EVALSHA of a script that also counts the certificate's use (PFADD,
// PFCOUNT) and says whether this use is the one to report, so clone
// detection adds no round trip. All turn a remaining time-to-live into an
// absolute time with the gateway's own clock, so clock skew between gateways and Redis
// does not move a ban's end.
//
// # Operators
//
// Bans and Lift (threat.BanAdmin, used by `mcc ban list|lift`) SCAN the ban
// keys with MATCH and read their PTTL and score in one pipeline per batch;
// Lift deletes the ban and the score key of each matching subject in one
// DEL. They bypass the circuit breaker: an operator wants the error, not a
// fallback.
//
// # Outages
//
// Redis is on the request path, so every call is bounded by short timeouts
// (Options) and commands are never retried (a retried Add could count twice).
// After FailureThreshold consecutive failures a circuit breaker opens: calls
// return ErrUnavailable at once, without touching the network, and a
// background probe PINGs every Cooldown until Redis answers. The outage is
// logged once (Warn) and its end once (Info); Stats exposes the state and the
// counters. The fusion engine falls back to its local memory store whenever a
// Store call returns an error.
package redisstore
