package fusion

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
)

// CRL freshness policy, the same for both gateways (the engine is shared by
// the Caddy app and `mcc authz`, and Envoy refuses a handshake validated
// against an expired CRL):
//
//   - A CRL past its NextUpdate no longer says whether a certificate is
//     revoked. A certificate whose issuer's CRL has expired is refused with
//     CONFIG_ERROR (reasonData.crlStatus "expired", .crl, .nextUpdate):
//     the set fails closed for those certificates, but the failure is the
//     operator's, so it scores 0 by default and bans no client.
//   - In the last quarter of its validity (at least the last hour) a CRL is
//     "stale soon": a warning is logged (CRLMonitor) and the state is
//     exposed (Set.CRLStates, Set.CRLSecondsUntilNextUpdate) for metrics.
//   - A CRL whose CRL number is lower than one already read in this
//     process for the same issuer is refused (the reload fails, the last
//     good configuration keeps serving): a validly signed but older CRL
//     would un-revoke certificates. Without CRL numbers, ThisUpdate decides.
//   - A CRL without NextUpdate never expires (as in BoringSSL).

// CRL statuses, as in CRLState.Status and reasonData.crlStatus.
const (
	CRLFresh     = "fresh"
	CRLStaleSoon = "stale_soon"
	CRLExpired   = "expired"
)

// crlStaleSoonMin is the shortest "stale soon" warning period.
const crlStaleSoonMin = time.Hour

// crlInfo is what the engine keeps of one CRL.
type crlInfo struct {
	path, field string
	der         []byte
	// rawIssuer is the CRL's issuer name; signerSPKI the key that signed it.
	rawIssuer  []byte
	signerSPKI []byte
	issuer     string
	number     *big.Int
	thisUpdate time.Time
	nextUpdate time.Time
	entries    int
}

func newCRLInfo(path, field string, crl *x509.RevocationList, signer *x509.Certificate) *crlInfo {
	return &crlInfo{
		path:       path,
		field:      field,
		der:        crl.Raw,
		rawIssuer:  crl.RawIssuer,
		signerSPKI: signer.RawSubjectPublicKeyInfo,
		issuer:     truncate(crl.Issuer.String(), 256),
		number:     crl.Number,
		thisUpdate: crl.ThisUpdate,
		nextUpdate: crl.NextUpdate,
		entries:    len(crl.RevokedCertificateEntries),
	}
}

// status is the CRL's freshness at now.
func (ci *crlInfo) status(now time.Time) string {
	if ci.nextUpdate.IsZero() {
		return CRLFresh
	}
	if now.After(ci.nextUpdate) {
		return CRLExpired
	}
	warn := ci.nextUpdate.Sub(ci.thisUpdate) / 4
	if warn < crlStaleSoonMin {
		warn = crlStaleSoonMin
	}
	if ci.nextUpdate.Sub(now) <= warn {
		return CRLStaleSoon
	}
	return CRLFresh
}

// fresher reports whether a expires later than b (b nil: always); no
// NextUpdate is never.
func fresher(a, b *crlInfo) bool {
	switch {
	case b == nil:
		return true
	case b.nextUpdate.IsZero():
		return false
	case a.nextUpdate.IsZero():
		return true
	}
	return a.nextUpdate.After(b.nextUpdate)
}

// olderThan reports whether o supersedes ci: a higher CRL number, or without
// numbers a later ThisUpdate.
func (ci *crlInfo) olderThan(o *crlInfo) bool {
	if ci.number != nil && o.number != nil {
		return ci.number.Cmp(o.number) < 0
	}
	return ci.thisUpdate.Before(o.thisUpdate)
}

func (ci *crlInfo) numberText() string {
	if ci.number == nil {
		return "none"
	}
	return ci.number.String()
}

// crlFor returns the freshest CRL of rs that covers leaf: issued under the
// leaf's issuer name and signed by the key that issued the leaf (the next
// certificate of the verified chain).
func (rs *revocationSet) crlFor(leaf *x509.Certificate, vchain []*x509.Certificate) *crlInfo {
	var best *crlInfo
	for _, ci := range rs.crls {
		if !bytes.Equal(ci.rawIssuer, leaf.RawIssuer) {
			continue
		}
		if len(vchain) > 1 && vchain[1] != nil && !bytes.Equal(ci.signerSPKI, vchain[1].RawSubjectPublicKeyInfo) {
			continue
		}
		if fresher(ci, best) {
			best = ci
		}
	}
	return best
}

// highWater remembers, per CRL issuer (name and key), the newest CRL read
// in this process, so that no reload (file watch, Caddy config reload,
// `mcc xds` or `mcc authz` reload) can go back to an older one. The CA's
// own numbering makes this sound: once CRL n is validly signed, any CRL
// below n is outdated, whichever configuration read it first.
type highWater struct {
	mu     sync.Mutex
	newest map[[sha256.Size]byte]*crlInfo
}

var crlHighWater = &highWater{newest: make(map[[sha256.Size]byte]*crlInfo)}

func (h *highWater) admit(ci *crlInfo) error {
	key := sha256.Sum256(append(append([]byte(nil), ci.rawIssuer...), ci.signerSPKI...))
	h.mu.Lock()
	defer h.mu.Unlock()
	if prev := h.newest[key]; prev != nil {
		if ci.olderThan(prev) {
			return fmt.Errorf("CRL number %s (thisUpdate %s) is older than CRL number %s (thisUpdate %s) already loaded for %s: refusing to go back to an older CRL, which would un-revoke certificates; the newer one stays in force",
				ci.numberText(), ci.thisUpdate.UTC().Format(time.RFC3339), prev.numberText(), prev.thisUpdate.UTC().Format(time.RFC3339), ci.issuer)
		}
		if !prev.olderThan(ci) {
			return nil
		}
	}
	h.newest[key] = ci
	return nil
}

// CRLState is the freshness of one CRL of a set.
type CRLState struct {
	// File is the CRL file's absolute path; Field its place in the file
	// ("fusion_sets[0].revocation.crls[0]").
	File, Field string
	Issuer      string
	// Number is the CRL number ("none" without one).
	Number     string
	ThisUpdate time.Time
	// NextUpdate is zero when the CRL has none (it never expires).
	NextUpdate time.Time
	// Status is CRLFresh, CRLStaleSoon or CRLExpired.
	Status string
	// Revoked counts the CRL's entries.
	Revoked int
}

// CRLStates returns the freshness at now of every CRL in force for the set.
func (s *Set) CRLStates(now time.Time) []CRLState {
	rs := s.rev.Load()
	if rs == nil {
		return nil
	}
	out := make([]CRLState, 0, len(rs.crls))
	for _, ci := range rs.crls {
		out = append(out, CRLState{
			File: ci.path, Field: ci.field, Issuer: ci.issuer, Number: ci.numberText(),
			ThisUpdate: ci.thisUpdate.UTC(), NextUpdate: ci.nextUpdate.UTC(), Status: ci.status(now), Revoked: ci.entries,
		})
	}
	return out
}

// CRLSecondsUntilNextUpdate returns the seconds from now until the earliest
// NextUpdate of the set's CRLs (negative once expired), for a gauge such as
// mcc_crl_next_update_seconds{fusion_set}. ok is false when the set has no
// CRL with a NextUpdate.
func (s *Set) CRLSecondsUntilNextUpdate(now time.Time) (seconds float64, ok bool) {
	rs := s.rev.Load()
	if rs == nil {
		return 0, false
	}
	for _, ci := range rs.crls {
		if ci.nextUpdate.IsZero() {
			continue
		}
		d := ci.nextUpdate.Sub(now).Seconds()
		if !ok || d < seconds {
			seconds, ok = d, true
		}
	}
	return seconds, ok
}

// CRLPEM returns the CRLs in force for the set (the ones the engine
// accepted, not whatever the files hold now) as PEM, for Envoy.
func (s *Set) CRLPEM() []byte {
	rs := s.rev.Load()
	if rs == nil {
		return nil
	}
	var out []byte
	for _, ci := range rs.crls {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: ci.der})...)
	}
	return out
}

// CRLProblems returns the CRLs of c that are expired or stale soon at now,
// located in the fusion set file (FILE:LINE: FIELD: MSG), in file order.
// `mcc validate` reports the expired ones as problems and the others as
// warnings.
func (c *Config) CRLProblems(now time.Time) (expired, staleSoon []Problem) {
	for _, id := range c.IDs {
		for _, st := range c.Sets[id].CRLStates(now) {
			p := Problem{File: c.source, Line: c.crlLines[st.Field], Field: st.Field}
			switch st.Status {
			case CRLExpired:
				p.Msg = fmt.Sprintf("CRL %s (%s) expired %s ago (nextUpdate %s): every certificate it covers is refused (CONFIG_ERROR) until it is re-signed (mcc ca crl)",
					st.Number, filepath.Base(st.File), now.Sub(st.NextUpdate).Round(time.Second), st.NextUpdate.Format(time.RFC3339))
				expired = append(expired, p)
			case CRLStaleSoon:
				p.Msg = fmt.Sprintf("warning: CRL %s (%s) expires in %s (nextUpdate %s): re-sign it (mcc ca crl)",
					st.Number, filepath.Base(st.File), st.NextUpdate.Sub(now).Round(time.Second), st.NextUpdate.Format(time.RFC3339))
				staleSoon = append(staleSoon, p)
			}
		}
	}
	sortProblems(expired)
	sortProblems(staleSoon)
	return expired, staleSoon
}

// CRLMonitor logs CRL freshness changes: a warning when a CRL becomes
// stale soon, an error when it expires, and an info line when a fresh one
// replaces it. Check it on every watch tick; it logs only transitions.
type CRLMonitor struct {
	log  *zap.Logger
	mu   sync.Mutex
	last map[string]string
}

// NewCRLMonitor returns a monitor logging to log (nil: no logging).
func NewCRLMonitor(log *zap.Logger) *CRLMonitor {
	if log == nil {
		log = zap.NewNop()
	}
	return &CRLMonitor{log: log, last: make(map[string]string)}
}

// Check logs the CRLs of cfg whose status changed since the last Check.
func (m *CRLMonitor) Check(cfg *Config, now time.Time) {
	if cfg == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]string)
	for _, id := range cfg.IDs {
		for _, st := range cfg.Sets[id].CRLStates(now) {
			key := id + "\x00" + st.File + "\x00" + st.Number
			seen[key] = st.Status
			if m.last[key] == st.Status {
				continue
			}
			fields := []zap.Field{zap.String("fusion_set", id), zap.String("crl", filepath.Base(st.File)),
				zap.String("crl_number", st.Number), zap.Time("next_update", st.NextUpdate)}
			switch st.Status {
			case CRLExpired:
				m.log.Error("CRL expired: certificates it covers are refused until it is re-signed (mcc ca crl)", fields...)
			case CRLStaleSoon:
				m.log.Warn("CRL expires soon: re-sign it (mcc ca crl)", append(fields, zap.Duration("expires_in", st.NextUpdate.Sub(now)))...)
			default:
				if m.last[key] != "" {
					m.log.Info("CRL fresh", fields...)
				}
			}
		}
	}
	m.last = seen
}
