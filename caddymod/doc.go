// Package caddymod holds mcc's Caddy modules. The policy itself lives in
// package fusion and the events, scores and bans in package threat; this
// package only parses, provisions and calls them.
//
//   - App `mcc` (global option `mcc { ... }`): the fusion sets (a fusion set
//     file and/or inline `fusion_set <id> { ... }` blocks), the score store
//     (`memory` or `redis <url>`: modules of the mcc.stores namespace) and
//     the event sinks (`log`, `file <path>`, `webhook <url> {...}`,
//     `redis_stream <url> {...}`: modules of the mcc.sinks namespace, with
//     the keys of the fusion file's sinks section).
//     The store URL, fusion set file, node and sink values may use Caddy's
//     {env.NAME} and {file.PATH} placeholders, expanded at provisioning, so
//     a password never sits in the config Caddy serves on /config.
//     The engine, store and pipeline survive config reloads; the files the
//     sets reference (CA bundles, revocation lists, CRLs) are polled and a
//     change applies without a reload.
//   - Handler `http.handlers.fusion_set` (directive `fusion_set <id>`, ordered
//     before basic_auth): evaluates each request's client certificate and
//     blocks it or passes it on with the event, as the set's mode says. It
//     sets {http.mcc.decision}, {http.mcc.reason}, {http.mcc.fusion_set},
//     {http.mcc.app_id}, {http.mcc.build_id} and {http.mcc.event_id} on
//     every request. A request with a finding (blocked, or reported in
//     detection) also gets the access log fields mcc_decision, mcc_reason,
//     mcc_fusion_set, mcc_app_id, mcc_build_id and mcc_event_id; allowed
//     requests do not, because adding log fields costs Caddy allocations
//     on every request. To log them on every request, use Caddy's
//     log_append with the placeholders, under other names than mcc_* (a
//     request with a finding would carry the key twice):
//     `log_append app_id {http.mcc.app_id}`.
//     The client address it scores and reports is the right-most
//     X-Forwarded-For address that is not one of the server's
//     trusted_proxies, walking from the peer (package adapter, the rule
//     Envoy's ext_authz uses too), with or without trusted_proxies_strict;
//     it replaces {client_ip} for the handlers after it.
//     `cert_header <name> [xfcc|pem] { max_size <size>; allow_multiple_elements }`
//     reads the certificate from a trusted proxy's header: one line, at most
//     max_size (64 KiB), one XFCC element unless allowed (then the
//     right-most); anything else is SPOOFED_CERT_HEADER or CERT_MALFORMED.
//   - Verifier `tls.client_auth.verifier.fusion_set` (`verifier fusion_set
//     <id>` in client_auth): hard rejects during the TLS handshake.
//
// Metrics, in Caddy's /metrics under caddy_mcc_: the table adapter.Metrics,
// shared with mcc authz and listed in docs/metrics.md.
//
// A typical Caddyfile:
//
//	{
//		mcc {
//			fusion_sets /etc/mcc/fusion-sets.yaml
//			sink file /var/log/mcc/events.jsonl max_size 10MiB keep 5
//		}
//	}
//
//	api.example.com {
//		tls {
//			client_auth {
//				mode request
//			}
//		}
//		fusion_set bank-prod
//		reverse_proxy 127.0.0.1:8080
//	}
package caddymod
