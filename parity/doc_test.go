// Package parity holds the Caddy/Envoy parity test: one fusion set file and
// one hostile-certificate corpus, fed through the Caddy handler (a real
// in-process Caddy, real TLS handshakes) and through the ext_authz Check
// (a real gRPC client), must give the same action, HTTP status, reason code
// and message for every case, in each of the three Threat-Event modes.
//
// It is a test-only package: nothing here is part of mcc's API.
package parity
