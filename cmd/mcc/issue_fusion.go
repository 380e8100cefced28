package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
)

// setGuard ties an issuance to a fusion set file: the record states the
// set's protections, and a certificate the set would reject is never
// written (wrong CA, app, lifetime, blocked build...).
type setGuard struct {
	protections *pki.Protections
	check       func(*pki.Issued) error
}

func loadSetGuard(ctx context.Context, path, setID, appID string) (*setGuard, error) {
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading fusion set file: %w", err)
	}
	set, ok := cfg.Sets[setID]
	if !ok {
		return nil, fmt.Errorf("fusion set %q is not in %s (it has %v)", setID, path, cfg.IDs)
	}
	if set.AppID != appID {
		return nil, fmt.Errorf("fusion set %q expects app_id %q, not %q", setID, set.AppID, appID)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading fusion set file: %w", err)
	}
	p := protectionsOf(set)
	p.Source = path
	sum := sha256.Sum256(data)
	p.SourceSHA256 = hex.EncodeToString(sum[:])

	check := func(iss *pki.Issued) error {
		eng, err := fusion.NewEngine(cfg, fusion.Options{})
		if err != nil {
			return fmt.Errorf("fusion set %q: %w", setID, err)
		}
		d := eng.Evaluate(ctx, setID, &fusion.Request{
			PeerCertificates: [][]byte{iss.Cert.Raw, iss.CA.Raw},
			ClientIP:         "127.0.0.1",
			RequestID:        "mcc-issue-check",
		})
		if d.Reason != "" {
			detail := ""
			if d.Event != nil {
				if msg, ok := d.Event.ReasonData["error"].(string); ok {
					detail = ": " + msg
				}
			}
			return fmt.Errorf("fusion set %q would reject this certificate (%s%s); nothing was written", setID, d.Reason, detail)
		}
		return nil
	}
	return &setGuard{protections: p, check: check}, nil
}

// protectionsOf lists a compiled set's effective protections (defaults
// filled in by fusion) for the certified-secure record.
func protectionsOf(s *fusion.Set) *pki.Protections {
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
