// Package envoyext is mcc's Envoy side at request time: an ext_authz
// Authorization server (envoy.service.auth.v3) that applies a fusion set to
// every HTTP request, and an AccessLogService (envoy.service.accesslog.v3)
// that turns TLS handshake failures reported by a listener-level tcp_grpc
// access log into threat events and fail-safe scores. Both feed one
// fusion.Engine (gateway "envoy"), so a client that hammers the handshake is
// banned at Check, and the decisions match the Caddy module's for the same
// fusion set file and certificate.
//
// # What Check reads
//
//   - fusion set: attributes.context_extensions["fusion_set"] (set per route by
//     the control plane). Missing or unknown: deny with CONFIG_ERROR.
//   - leaf certificate: attributes.source.certificate, Envoy's URL-encoded PEM
//     (include_peer_certificate: true). Empty means no certificate. ext_authz
//     never sends the chain; when Envoy also sets x-forwarded-client-cert with
//     a Chain starting with that leaf (SANITIZE_SET, chain: true), the chain
//     is read from there, so intermediates and chain depth count as in Caddy.
//   - client IP: attributes.source.address; when that address is a trusted
//     proxy (Options.TrustedProxies), the right-most X-Forwarded-For hop that
//     is not a trusted proxy.
//   - SNI: attributes.tls_session.sni (include_tls_session: true).
//   - host, method, path (query removed, percent-decoded as Caddy reports
//     it), x-request-id and the fusion set's device headers:
//     attributes.request.http.
//
// # Which fusion set a handshake failure belongs to
//
// A failed handshake never reaches a route, so there is no context extension.
// StreamAccessLogs picks the set for each TCPAccessLogEntry in this order:
//
//  1. common_properties.custom_tags["fusion_set"], for a listener that serves
//     one fusion set (tcp_grpc custom_tags can carry a literal);
//  2. the fusion set file's gateway section (the one mcc xds builds Envoy
//     from): the listener bound to downstream_local_address's port, and on it
//     the route whose host matches tls_properties.tls_sni_hostname the way
//     Envoy matches server_names (exact, then the most specific "*." suffix);
//  3. Options.SNIRoutes, matched the same way, for deployments without a
//     gateway section;
//  4. Options.HandshakeFusionSet (mcc authz --handshake-fusion-set);
//  5. the only fusion set, when the file holds exactly one.
//
// An entry that matches none of these is counted
// (mcc_authz_handshake_failures_total{fusion_set="_unrouted"}) and logged,
// not scored. So is a failure whose downstream address is a trusted proxy
// (fusion_set="_trusted_proxy"): it cannot be pinned on a client, and
// scoring it would ban the proxy.
//
// # Who may call, and what a caller can cost
//
// Check and the access-log service decide bans, so the gRPC listeners
// trust only Envoy: with ServeOptions.Creds (mcc authz --tls-cert, --tls-key,
// --client-ca) a caller needs a client certificate the control CA signed,
// and with CheckPeers / AccessLogPeers (--peer, --access-log-peer) one whose
// identity is listed; anyone else gets PERMISSION_DENIED before a handler
// runs. ServeOptions.AccessLog (--access-log-listen) serves the access-log
// service on its own address, and Check only on the main one.
//
// Whatever a caller sends is bounded before it is parsed, cached or
// written: gRPC messages (DefaultMaxRecvMsgSize), x-forwarded-client-cert
// (DefaultMaxXFCCBytes, one element unless allowed), each certificate
// (DefaultMaxCertificateBytes), the certificate cache (DefaultCertCacheBytes,
// keyed by a hash), every string copied into events and logs (limits.go),
// and handshake failures per access-log stream (a token bucket,
// DefaultHandshakeFailureRate and DefaultHandshakeFailureBurst; drops are
// counted in mcc_authz_handshake_failures_dropped_total).
package envoyext
