// Package fleet holds the tests of a fleet: a Caddy gateway (a real
// in-process Caddy with the mcc app, `store redis <url>`) and an Envoy
// gateway's `mcc authz` service (envoyext over real gRPC, fed CheckRequests
// and access-log streams shaped exactly as Envoy sends them) that share one
// real redis-server and one fusion set file.
//
// They hold the fleet promises of the design: a client that crosses the
// fail-safe threshold at one gateway is blocked at the other on its next
// request, scores earned at both gateways add up, a ban ends at both when
// it expires, and when Redis goes away under load every gateway keeps
// enforcing (no errors, the same decisions, local fail-safe bans) and finds
// Redis again by itself when it comes back.
//
// It is a test-only package: nothing here is part of mcc's API.
package fleet
