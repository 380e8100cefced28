// Package fusion is mcc's policy core: the fusion set file (loading and
// strict validation, every problem with file, line and field) and the
// Engine that decides one request against one fusion set. Both gateways,
// Caddy and Envoy (through ext_authz), call the same Engine, so the same
// certificate gets the same decision and reason code in both.
//
// Evaluate works in this order:
//
//  1. An unknown fusion set is a CONFIG_ERROR block.
//  2. Size and depth caps on the presented chain (no parsing yet).
//  3. The verdict cache, keyed by leaf DER per set.
//  4. A fail-safe ban of the client (IP, device id, certificate) is a
//     FAIL_SAFE_ACTIVE block in every mode. In the same store call, a
//     cached good certificate's use is counted for clone detection
//     (clone.go; on a cache miss, once the chain has verified).
//  5. A failure the gateway observed itself (Request.Reason), else the
//     certificate verdict: parse; SHA-1/MD5 signatures; validity against the
//     injected clock; chain to the set's CA (reusing the TLS stack's verified
//     chain when it ends in that CA) and SPKI pins; revocation by serial,
//     fingerprint or CRL; leaf CA flag and lifetime (and an install
//     certificate's installs.max_lifetime); the mcc identity URI; key
//     strength; key usage; build rules. Then, on the verdict cached or
//     not, the certificate's kind (build or install) against what the
//     request's purpose takes (installs.accept): CERT_KIND_REFUSED.
//  6. A failure is scored (fail_safe), described in a threat event, emitted
//     when threat_events is on, and blocks in defense mode (or when it
//     crossed the fail-safe threshold). A good request whose use of its
//     certificate crossed a clone_detection threshold is allowed in every
//     mode and reported as RATE_ANOMALY, scoring the client, never the
//     certificate; but an install certificate of a set with block_installs
//     in defense mode is blocked, and banned by the store in the counting
//     call.
//
// Verdicts are cached per set and leaf, bounded, and used only while the
// chain is within its validity period and the set's revocation generation
// is unchanged; ReloadRevocations swaps the generation before it returns, so
// no cached verdict outlives a revocation. The cached allow path does not
// allocate.
//
// The contracts this package implements (modes, reason codes and what each
// scores, event fields) are in docs/ARCHITECTURE.md. Package fusiontest
// builds a corpus of hostile certificates, one per failure class, for the
// gateways' tests.
package fusion
