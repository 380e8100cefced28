package envoyext

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/mccgate/mcc/fusion"
)

// Status is mcc authz's /status page, shaped like mcc xds's: the
// configuration served, the score store, the event sinks and the limits.
type Status struct {
	Config    ConfigStatus    `json:"config"`
	Store     StoreStatus     `json:"store"`
	Sinks     []SinkStatus    `json:"sinks"`
	AccessLog AccessLogStatus `json:"access_log"`
	CertCache CertCacheStatus `json:"cert_cache"`
}

// ConfigStatus describes the fusion set file being served.
type ConfigStatus struct {
	Path string `json:"path,omitempty"`
	// Version is a hash of the names and contents of the files the
	// configuration was loaded from (the fusion set file and every file it
	// references), as mcc xds computes it.
	Version    string    `json:"version"`
	FusionSets []string  `json:"fusion_sets"`
	LoadedAt   time.Time `json:"loaded_at,omitzero"`
	// LastLoadError is why the latest reload was refused; empty (with its
	// time) once a good file loads again.
	LastLoadError   string    `json:"last_load_error,omitempty"`
	LastLoadErrorAt time.Time `json:"last_load_error_at,omitzero"`
}

// StoreStatus describes the score and ban store.
type StoreStatus struct {
	// Name is "memory" or the store URL without its password.
	Name string `json:"name"`
	// Errors counts failed store calls since start; Failing is true while
	// scoring runs on a private in-memory store (the last call failed, or
	// the store reports itself down); Bans counts fail-safe bans started.
	// All three are the engine's own counts (fusion.EngineStats), which
	// the metrics export too (docs/metrics.md).
	Errors  uint64 `json:"errors"`
	Failing bool   `json:"failing"`
	Bans    uint64 `json:"bans"`
}

// SinkStatus is one event sink's counters.
type SinkStatus struct {
	Sink      string `json:"sink"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Failed    uint64 `json:"failed"`
	Queued    int    `json:"queued"`
}

// AccessLogStatus describes the access-log service.
type AccessLogStatus struct {
	OpenStreams int64 `json:"open_streams"`
	// HandshakeFailuresDropped counts failures over the per-stream rate
	// limit since start.
	HandshakeFailuresDropped uint64 `json:"handshake_failures_dropped"`
}

// CertCacheStatus describes the decoded-certificate cache.
type CertCacheStatus struct {
	Entries  int   `json:"entries"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
}

// configStatus records loads and refused reloads for /status.
type configStatus struct {
	mu          sync.Mutex
	path        string
	version     string
	sets        []string
	loadedAt    time.Time
	lastError   string
	lastErrorAt time.Time
}

func (c *configStatus) loaded(cfg *fusion.Config, now time.Time) {
	v := configVersion(cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.path, c.version, c.sets, c.loadedAt = cfg.Path, v, append([]string(nil), cfg.IDs...), now
	c.lastError, c.lastErrorAt = "", time.Time{}
}

func (c *configStatus) failed(err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastError, c.lastErrorAt = clip(err.Error(), 4096), now
}

// configVersion hashes the names and contents of cfg's files; "inline"
// for a configuration that did not come from a file.
func configVersion(cfg *fusion.Config) string {
	if cfg.Path == "" {
		return "inline"
	}
	files := append([]string(nil), cfg.WatchedFiles()...)
	sort.Strings(files)
	h := sha256.New()
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			// A file gone since the load: the version still changes.
			fmt.Fprintf(h, "%s\x00missing\x00", p)
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Status returns a copy of the service's state.
func (s *Service) Status() Status {
	s.status.mu.Lock()
	st := Status{Config: ConfigStatus{
		Path:            s.status.path,
		Version:         s.status.version,
		FusionSets:      append([]string{}, s.status.sets...),
		LoadedAt:        s.status.loadedAt,
		LastLoadError:   s.status.lastError,
		LastLoadErrorAt: s.status.lastErrorAt,
	}}
	s.status.mu.Unlock()
	es := s.engine.Stats()
	st.Store = StoreStatus{Name: s.storeName, Errors: es.StoreErrors, Failing: es.StoreFallback, Bans: es.Bans}
	if st.Store.Name == "" {
		st.Store.Name = "memory"
	}
	st.Sinks = []SinkStatus{}
	if s.pipeline != nil {
		for _, ss := range s.pipeline.Stats() {
			st.Sinks = append(st.Sinks, SinkStatus{Sink: ss.Sink, Delivered: ss.Delivered, Dropped: ss.Dropped, Failed: ss.Failed, Queued: ss.Queued})
		}
	}
	st.AccessLog = AccessLogStatus{OpenStreams: s.alsStreams.Load(), HandshakeFailuresDropped: s.handshakeDropped.Load()}
	n, b := s.certs.stats()
	st.CertCache = CertCacheStatus{Entries: n, Bytes: b, MaxBytes: s.certs.maxBytes}
	return st
}
