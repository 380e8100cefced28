// Package attest verifies key attestations for install enrollment: proof,
// signed by hardware the operator trusts, that the key in an enrollment's CSR
// was generated inside a device's secure hardware, for this enrollment's
// challenge, by the app the fusion set names.
//
// A Verifier checks one format (Android Key Attestation here); a Policy says
// per fusion set whether attestation is required, optional or off and what it
// must attest (package names, signing certificate digests, minimum security
// level). Policy.Check is the one place the mode is applied. Every refusal is
// an *Error with a stable Kind, so the enrollment API can map it to a problem
// type and a threat event without parsing messages.
//
// What is checked, in which order and why, and where the embedded Google roots
// come from: docs/attestation.md.
package attestation
