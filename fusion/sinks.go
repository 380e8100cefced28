package fusion

// SinkConfig is one event sink of the fusion file's `sinks:` section, read by
// `mcc authz` (Caddy configures its sinks in the Caddyfile with the same keys).
// Owned by the sinks work of issue 11: it completes the keys and validation.
type SinkConfig struct {
	// Type is the sink: log, file, webhook or redis_stream.
	Type string `yaml:"type" json:"type"`
	// URL is the webhook endpoint or the redis:// URL of a redis_stream sink.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
}
