package fusion

import (
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mccgate/mcc/threat"
)

// Defaults applied when a fusion set leaves a field out.
const (
	DefaultStatus           = 403
	DefaultMessage          = "This app version can't connect. Please update the app from the official store."
	DefaultMaxChainDepth    = 4
	DefaultMinRSABits       = 2048
	DefaultFailSafeWindow   = 10 * time.Minute
	DefaultFailSafeDuration = 15 * time.Minute
)

// DefaultAllowedCurves are the key types accepted when allowed_curves is unset.
var DefaultAllowedCurves = []string{"P-256", "P-384"}

// Set is a compiled fusion set. It is immutable once loaded, except for its
// revocation data, which ReloadRevocations swaps atomically.
type Set struct {
	ID          string
	Description string
	Mode        threat.Mode
	// Events says whether events go to the sinks (threat_events).
	Events  bool
	Status  int
	Message string
	// AppID is the required app; IdentityURI is IdentityURI(ID, AppID), the
	// one mcc URI SAN a leaf must carry.
	AppID       string
	IdentityURI string
	FailSafe    threat.Policy
	// Clone is clone detection (clone_detection); the zero value is off.
	Clone threat.ClonePolicy
	// Installs is the installs block with its defaults: the kinds of
	// certificate accepted, install lifetimes, enrollment limits.
	Installs InstallPolicy

	// CACerts are the trust anchors; IntermediateCerts the optional
	// configured intermediates. Roots and Intermediates are the same as pools.
	CACerts           []*x509.Certificate
	IntermediateCerts []*x509.Certificate
	Roots             *x509.CertPool
	Intermediates     *x509.CertPool
	// SPKIPins are SHA-256 hashes of accepted leaf SubjectPublicKeyInfos.
	SPKIPins [][]byte

	MinRSABits           int
	AllowedCurves        []string
	RequireClientAuthEKU bool
	// MaxLifetime caps the leaf's validity period; 0 means no cap.
	MaxLifetime   time.Duration
	MaxChainDepth int
	BlockedBuilds []string
	// MinBuildDate is the zero time when unset.
	MinBuildDate time.Time
	// CacheMaxBytes is the byte budget of the set's verdict cache
	// (cache.max_bytes, default DefaultCacheMaxBytes).
	CacheMaxBytes int64

	// DeviceHeaders maps device context keys (deviceID, ...) to canonical
	// request header names.
	DeviceHeaders map[string]string
	// Config is the set as written.
	Config SetConfig

	scores         map[threat.Reason]int
	curves         map[string]bool
	blocked        map[string]struct{}
	deviceIDHeader string
	caFiles        []string
	revSrc         revocationSource
	rev            atomic.Pointer[revocationSet]
	// reloadMu serializes reloads, so a slow reader of old files cannot
	// store its data over a newer generation.
	reloadMu sync.Mutex
}

// Score returns the event score of reason r for this set.
func (s *Set) Score(r threat.Reason) int {
	if v, ok := s.scores[r]; ok {
		return v
	}
	return threat.DefaultScores[r]
}

// CAPEM returns the trusted CA bundle as PEM (certificates only, re-encoded,
// so nothing else that sat in the source file is passed on).
func (s *Set) CAPEM() []byte {
	var out []byte
	for _, c := range s.CACerts {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// CRLFiles returns the absolute paths of the set's CRL files.
func (s *Set) CRLFiles() []string {
	return append([]string(nil), s.revSrc.crls...)
}

// RevokedSerials returns the revoked serial numbers of the current
// revocation generation as lowercase hex without leading zeros, sorted.
func (s *Set) RevokedSerials() []string {
	rs := s.rev.Load()
	if rs == nil {
		return nil
	}
	seen := make(map[string]bool, len(rs.serials))
	add := func(m map[string]struct{}) {
		for k := range m {
			seen[k] = true
		}
	}
	add(rs.serials)
	for _, l := range rs.lists {
		add(l.serials)
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, serialHex([]byte(k)))
	}
	sort.Strings(out)
	return out
}

// RevocationGeneration counts revocation reloads of this set, starting at 1.
func (s *Set) RevocationGeneration() uint64 {
	if rs := s.rev.Load(); rs != nil {
		return rs.gen
	}
	return 0
}

// files lists the absolute paths of every file the set was built from.
func (s *Set) files() []string {
	out := append([]string(nil), s.caFiles...)
	out = append(out, s.revSrc.files...)
	out = append(out, s.revSrc.crls...)
	if f := s.revSrc.remote.caFile; f != "" {
		out = append(out, f)
	}
	return out
}

func absPath(baseDir, p string) string {
	if filepath.IsAbs(p) || baseDir == "" {
		return filepath.Clean(p)
	}
	return filepath.Join(baseDir, p)
}
