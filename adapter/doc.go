// Package adapter is the gateway adapter kit: the rules both gateways (Caddy
// in caddymod, Envoy's ext_authz in envoyext) apply to what a request says
// about itself before the policy core sees it, so that the same request gets
// the same client address and the same certificate through either gateway.
//
// It imports neither Caddy nor Envoy: each gateway hands it plain values
// (the peer address, header lines, a way to ask "is this a trusted proxy")
// and gets plain values back.
//
//   - ClientIP: the client address is the right-most X-Forwarded-For address
//     that is not a trusted proxy, walking from the connection's peer.
//   - ParseXFCC and ParsePEMHeader: the client certificate chain forwarded by
//     a TLS-terminating proxy, with a size cap, one header line only, and one
//     XFCC element unless the operator allows more.
package adapter
