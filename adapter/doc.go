// Package adapter is the gateway adapter kit: the rules both gateways (Caddy
// in caddymod, Envoy's ext_authz in envoyext) apply around the policy core,
// written once so that the same request gets the same answer through either
// gateway by construction, not because a test compares them
// (docs/ARCHITECTURE.md, "Packages").
//
// It imports neither Caddy nor Envoy, and the core (fusion, threat, pki)
// does not import it: each gateway hands it plain values and gets plain
// values back.
//
//   - ClientIP: the client address is the right-most X-Forwarded-For address
//     that is not a trusted proxy, walking from the connection's peer.
//   - ParseXFCC, ParsePEMHeader and UnescapePEM: the client certificate
//     chain forwarded by a TLS-terminating proxy, with a size cap, one
//     header line only, one XFCC element unless the operator allows more,
//     and only the five URL escapes proxies write for PEM.
//   - Block: the block response (status, headers including
//     HeaderExternalID, body in JSON or text by Accept), the same bytes at
//     both gateways.
//   - Metrics: the table of metric names, types, labels and label values
//     both gateways export (docs/metrics.md is generated from it), with the
//     collectors built from it (Decisions, EngineCollector,
//     EventsCollector).
package adapter
