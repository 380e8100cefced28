// Package setguard ties an issuance to a compiled fusion set: the
// protections the certified-secure record states, and the check that the
// set would accept the new certificate (right CA, app, lifetime, build
// rules), so no certificate the set would reject is ever handed out. Both
// `mcc issue --fusion-set-file` and mcc server's builds use it.
package setguard

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
)

// Guard is one fusion set, ready to vet certificates issued for it.
type Guard struct {
	// Protections are the set's effective protections; callers fill in
	// Source and SourceSHA256 (a file path, or a server's set version).
	Protections *pki.Protections
	setID       string
	engine      *fusion.Engine
}

// ErrNoSet and ErrWrongApp are returned (wrapped) by New.
var (
	ErrNoSet    = fmt.Errorf("fusion set is not in the configuration")
	ErrWrongApp = fmt.Errorf("fusion set expects another app_id")
)

// New returns the guard of set setID of cfg for app appID. The engine it
// evaluates with has no pipeline and a private store: checking a
// certificate emits nothing and bans nobody.
func New(cfg *fusion.Config, setID, appID string) (*Guard, error) {
	return NewAt(cfg, setID, appID, nil)
}

// NewAt is New with the engine reading clock (nil: the wall clock), so a
// server checks certificates at the time it issues them at.
func NewAt(cfg *fusion.Config, setID, appID string, clock func() time.Time) (*Guard, error) {
	set, ok := cfg.Sets[setID]
	if !ok {
		return nil, fmt.Errorf("fusion set %q: %w (it has %v)", setID, ErrNoSet, cfg.IDs)
	}
	if set.AppID != appID {
		return nil, fmt.Errorf("fusion set %q expects app_id %q, not %q: %w", setID, set.AppID, appID, ErrWrongApp)
	}
	eng, err := fusion.NewEngine(cfg, fusion.Options{CacheSize: 1, Clock: clock})
	if err != nil {
		return nil, fmt.Errorf("fusion set %q: %w", setID, err)
	}
	return &Guard{Protections: ProtectionsOf(set), setID: setID, engine: eng}, nil
}

// Check asks the set whether it would accept iss (its certificate
// presented with its CA). The error says why not.
func (g *Guard) Check(ctx context.Context, iss *pki.Issued) error {
	d := g.engine.Evaluate(ctx, g.setID, &fusion.Request{
		PeerCertificates: [][]byte{iss.Cert.Raw, iss.CA.Raw},
		ClientIP:         "127.0.0.1",
		RequestID:        "mcc-issue-check",
		// A build certificate is always good to enroll with; with
		// installs.accept [install] it is good for nothing else.
		Purpose: fusion.PurposeEnroll,
	})
	if d.Reason == "" {
		return nil
	}
	detail := ""
	if d.Event != nil {
		if msg, ok := d.Event.ReasonData["error"].(string); ok {
			detail = ": " + msg
		}
	}
	return &RejectedError{SetID: g.setID, Reason: string(d.Reason), Detail: detail}
}

// Evaluate runs the set's rules on a request made to mcc server itself
// (an enrollment or a renewal presenting its certificate). Scores and
// bans stay in the guard's own store: a client refused here is refused
// here, and never banned at the gateways for it.
func (g *Guard) Evaluate(ctx context.Context, req *fusion.Request) fusion.Decision {
	return g.engine.Evaluate(ctx, g.setID, req)
}

// Set is the compiled fusion set the guard checks against.
func (g *Guard) Set() *fusion.Set {
	s, _ := g.engine.Set(g.setID)
	return s
}

// RejectedError is a certificate the set would refuse.
type RejectedError struct {
	SetID, Reason, Detail string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("fusion set %q would reject this certificate (%s%s)", e.SetID, e.Reason, e.Detail)
}

// ProtectionsOf lists a compiled set's effective protections (defaults
// filled in by fusion) for the certified-secure record.
func ProtectionsOf(s *fusion.Set) *pki.Protections {
	p := &pki.Protections{
		Mode:          string(s.Mode),
		ThreatEvents:  s.Events,
		IdentityURI:   s.IdentityURI,
		MaxChainDepth: s.MaxChainDepth,
		BlockStatus:   s.Status,
		CryptoFloor: pki.CryptoFloor{
			MinRSABits:           s.MinRSABits,
			AllowedCurves:        s.AllowedCurves,
			RequireClientAuthEKU: s.RequireClientAuthEKU,
		},
		Builds: pki.BuildRules{Blocked: s.BlockedBuilds},
		Revocation: pki.RevocationSources{
			Serials:      len(s.Config.Revocation.Serials),
			Fingerprints: len(s.Config.Revocation.Fingerprints),
			Files:        s.Config.Revocation.Files,
			CRLs:         s.Config.Revocation.CRLs,
		},
	}
	for _, c := range s.CACerts {
		p.TrustedCA = append(p.TrustedCA, pki.Fingerprint(c.Raw))
	}
	for _, pin := range s.SPKIPins {
		p.SPKIPins = append(p.SPKIPins, base64.StdEncoding.EncodeToString(pin))
	}
	if s.MaxLifetime > 0 {
		p.MaxLifetime = s.MaxLifetime.String()
	}
	if !s.MinBuildDate.IsZero() {
		p.Builds.MinBuildDate = s.MinBuildDate.UTC().Format(time.RFC3339)
	}
	if s.FailSafe.Enabled() {
		p.FailSafe = &pki.FailSafeRule{Threshold: s.FailSafe.Threshold, Window: s.FailSafe.Window.String(), Duration: s.FailSafe.BanFor.String()}
	}
	for k := range s.DeviceHeaders {
		p.DeviceContext = append(p.DeviceContext, k)
	}
	sort.Strings(p.DeviceContext)
	return p
}
