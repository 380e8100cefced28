package fusion

import "go.yaml.in/yaml/v3"

// This file is the fusion set file format: the YAML that `mcc validate`,
// the Caddy app, `mcc authz` and `mcc xds` all read. Every key is documented
// in examples/fusion-sets.yaml. Loading is strict: unknown keys are errors.

// File is one fusion set file. One file may hold many sets.
type File struct {
	// Store is where scores and bans live: "memory" (default) or a
	// redis:// / rediss:// URL. Used by `mcc authz`; Caddy sets its own.
	Store string `yaml:"store,omitempty" json:"store,omitempty"`
	// Sinks are where `mcc authz` sends threat events (see SinkConfig).
	Sinks []SinkConfig `yaml:"sinks,omitempty" json:"sinks,omitempty"`
	// FusionSets are the policies, one per app (or app and environment).
	FusionSets []SetConfig `yaml:"fusion_sets" json:"fusion_sets"`
	// Gateway describes the Envoy side (listeners, routes, node groups) for
	// `mcc xds`; `mcc authz` routes handshake failures by it; Caddy ignores
	// it. It is kept as a YAML node (with the file's line numbers) and
	// decoded strictly by package xds/gateway, which owns its format (see
	// LoadFileWithGateway).
	Gateway *yaml.Node `yaml:"gateway,omitempty" json:"-"`
}

// SetConfig is one fusion set as written in the file.
type SetConfig struct {
	ID          string `yaml:"id" json:"id"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`

	// TrustedCA is the CA that issues this app's client certificates.
	TrustedCA CASource `yaml:"trusted_ca" json:"trusted_ca"`
	// Intermediates are optional intermediate CAs (not trust anchors).
	Intermediates *CASource `yaml:"intermediates,omitempty" json:"intermediates,omitempty"`

	// AppID is the required app identity: the leaf must carry exactly one
	// mcc URI SAN and it must be IdentityURI(ID, AppID).
	AppID string `yaml:"app_id" json:"app_id"`
	// SPKIPins, when set, are base64 SHA-256 hashes of the leaf's
	// SubjectPublicKeyInfo; the leaf must match one.
	SPKIPins []string `yaml:"spki_pins,omitempty" json:"spki_pins,omitempty"`

	Revocation Revocation `yaml:"revocation,omitempty" json:"revocation,omitempty"`
	Crypto     Crypto     `yaml:"crypto,omitempty" json:"crypto,omitempty"`

	// MaxLifetime caps NotAfter-NotBefore of the leaf ("8760h", "365d").
	MaxLifetime Duration `yaml:"max_lifetime,omitempty" json:"max_lifetime,omitempty"`
	// MaxChainDepth caps the number of certificates presented (default 4).
	MaxChainDepth int `yaml:"max_chain_depth,omitempty" json:"max_chain_depth,omitempty"`

	Builds Builds `yaml:"builds,omitempty" json:"builds,omitempty"`

	// Mode is "defense" or "detection".
	Mode string `yaml:"mode" json:"mode"`
	// ThreatEvents turns event emission on. detection without events is
	// refused: it could neither block nor report.
	ThreatEvents bool `yaml:"threat_events" json:"threat_events"`
	// Message is shown to the user when a request is blocked.
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	// Status is the HTTP status of a block (default 403).
	Status int `yaml:"status,omitempty" json:"status,omitempty"`

	// Scores overrides per-reason event scores (reason code -> score).
	Scores map[string]int `yaml:"scores,omitempty" json:"scores,omitempty"`
	// FailSafe blocks a client whose running score crosses a threshold.
	FailSafe *FailSafe `yaml:"fail_safe,omitempty" json:"fail_safe,omitempty"`

	// CloneDetection reports a certificate used from too many addresses or
	// devices (see clone.go). Off when absent.
	CloneDetection *CloneDetection `yaml:"clone_detection,omitempty" json:"clone_detection,omitempty"`

	// Installs says which certificates the set's routes accept (build,
	// install) and how mcc server enrolls installs (see installs.go).
	Installs *Installs `yaml:"installs,omitempty" json:"installs,omitempty"`

	// DeviceHeaders maps device context keys (deviceID, osVersion, ...) to
	// the request headers the app sends them in.
	DeviceHeaders map[string]string `yaml:"device_headers,omitempty" json:"device_headers,omitempty"`

	// Cache bounds the set's verdict cache (see cache.go).
	Cache *CacheConfig `yaml:"cache,omitempty" json:"cache,omitempty"`
}

// CacheConfig bounds one set's verdict cache.
type CacheConfig struct {
	// MaxBytes is the byte budget ("16MiB", "512KiB" or a number of
	// bytes; default 16MiB, 256KiB to 4GiB).
	MaxBytes ByteSize `yaml:"max_bytes,omitempty" json:"max_bytes,omitempty"`
}

// CASource is a PEM bundle given as a file path (relative to the fusion set
// file) or inline.
type CASource struct {
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	PEM  string `yaml:"pem,omitempty" json:"pem,omitempty"`
}

// Revocation lists what is revoked. Files are re-read when they change.
type Revocation struct {
	Serials      []string `yaml:"serials,omitempty" json:"serials,omitempty"`
	Fingerprints []string `yaml:"fingerprints,omitempty" json:"fingerprints,omitempty"`
	// Files are revocation lists as written by `mcc revoke` (one hex serial
	// or "sha256:<hex>" fingerprint per line, # comments).
	Files []string `yaml:"files,omitempty" json:"files,omitempty"`
	// CRLs are PEM or DER CRL files signed by the trusted CA.
	CRLs []string `yaml:"crls,omitempty" json:"crls,omitempty"`
	// URLs are CRLs (PEM or DER, signed by the trusted CA) fetched over
	// https, or http to a loopback host: the mcc server's
	// /v1/fusion-sets/{set}/crl.pem. See remote.go.
	URLs []string `yaml:"urls,omitempty" json:"urls,omitempty"`
	// URLInterval is how often each URL is fetched (default 5s, at
	// least 1s).
	URLInterval Duration `yaml:"url_interval,omitempty" json:"url_interval,omitempty"`
	// URLCA is a PEM file of CA certificates trusted for the https
	// fetches, in addition to the system roots.
	URLCA string `yaml:"url_ca,omitempty" json:"url_ca,omitempty"`
}

// Crypto is the crypto floor for presented certificates. SHA-1 and MD5
// signatures are always refused.
type Crypto struct {
	MinRSABits    int      `yaml:"min_rsa_bits,omitempty" json:"min_rsa_bits,omitempty"`     // default 2048
	AllowedCurves []string `yaml:"allowed_curves,omitempty" json:"allowed_curves,omitempty"` // default P-256, P-384
	// RequireClientAuthEKU defaults to true; set false only for legacy fleets.
	RequireClientAuthEKU *bool `yaml:"require_client_auth_eku,omitempty" json:"require_client_auth_eku,omitempty"`
}

// Builds restricts which app builds are accepted.
type Builds struct {
	Blocked      []string `yaml:"blocked,omitempty" json:"blocked,omitempty"`
	MinBuildDate string   `yaml:"min_build_date,omitempty" json:"min_build_date,omitempty"` // RFC 3339 date or time
}

// FailSafe is fail-safe enforcement: at Threshold within Window, ban for Duration.
type FailSafe struct {
	Threshold int      `yaml:"threshold" json:"threshold"`
	Window    Duration `yaml:"window,omitempty" json:"window,omitempty"`
	Duration  Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// Subjects are what the set scores and bans: "address", "device" and
	// "certificate" (default all three). Each reason's own table (see
	// threat.Reason.Subjects) still applies: a certificate that verifies
	// against the set's CA is never scored.
	Subjects []string `yaml:"subjects,omitempty" json:"subjects,omitempty"`
	// IPv4Prefix and IPv6Prefix are the prefix lengths client addresses
	// are scored and banned by (default 32 and 64; 16-32 and 32-128).
	IPv4Prefix int `yaml:"ipv4_prefix,omitempty" json:"ipv4_prefix,omitempty"`
	IPv6Prefix int `yaml:"ipv6_prefix,omitempty" json:"ipv6_prefix,omitempty"`
}
