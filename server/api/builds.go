package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/pki/setguard"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/store"
)

func (a *API) routesBuilds() {
	a.route("POST", "/v1/fusion-sets/{set}/builds", auth.ScopeIssue, a.createBuild)
}

// Bundle profiles: which PKCS#12 bundles a build gets. Modern (AES-256,
// PBKDF2) is what every current importer takes; android and ios get the
// 3DES bundle their importers take inside an AES-256-GCM envelope
// (pki.PlatformFormat); legacy (a bare 3DES bundle) and both (modern and
// legacy) are for importers that cannot open the envelope.
var bundleProfiles = map[string][]pki.BundleFormat{
	"modern":  {pki.FormatModern2023},
	"android": {pki.FormatLegacyEnveloped},
	"ios":     {pki.FormatLegacyEnveloped},
	"legacy":  {pki.FormatLegacyDES},
	"both":    {pki.FormatModern2023, pki.FormatLegacyDES},
}

// buildRequest is the body of POST /v1/fusion-sets/{set}/builds.
type buildRequest struct {
	AppID      string `json:"appId"`
	BuildID    string `json:"buildId"`
	BuildDate  string `json:"buildDate,omitempty"` // RFC 3339; now when empty
	BuildUser  string `json:"buildUser,omitempty"`
	BuildHost  string `json:"buildHost,omitempty"`
	SDKVersion string `json:"sdkVersion,omitempty"`
	Profile    string `json:"profile,omitempty"`  // modern (default), android, ios, legacy, both
	ValidFor   string `json:"validFor,omitempty"` // Go duration; pki.DefaultLeafValidity when empty
}

// bundleJSON is a bundle as the API returns it once: the PKCS#12 file
// (base64) and its password.
type bundleJSON struct {
	Format   pki.BundleFormat `json:"format"`
	SHA256   string           `json:"sha256"`
	Data     []byte           `json:"data"`
	Password string           `json:"password"`
}

type buildResponse struct {
	Certificate  certificateJSON `json:"certificate"`
	Bundle       bundleJSON      `json:"bundle"`
	LegacyBundle *bundleJSON     `json:"legacyBundle,omitempty"`
	Record       json.RawMessage `json:"record"`
}

// createBuild issues a build's certificate: bundle(s), password(s) and the
// certified record stating the set's published protections. The
// certificate row, its audit entry and the stored response of an
// Idempotency-Key commit together, so a retried request gets this build
// again and never a second certificate.
func (a *API) createBuild(w http.ResponseWriter, r *http.Request, c *auth.Caller) error {
	set := r.PathValue("set")
	if certid.CheckSetID(set) != nil {
		return notFound("no fusion set " + quoteForDetail(set))
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return bodyError(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req buildRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Profile == "" {
		req.Profile = "modern"
	}
	issue, formats, err := a.checkBuild(req, set)
	if err != nil {
		return err
	}
	ps, err := a.publishedSet(r.Context(), set)
	if err != nil {
		return err
	}
	claim, replayed, err := a.claimIdempotency(w, r, c, body)
	if err != nil || replayed {
		return err
	}
	resp, err := a.issueBuild(r.Context(), c, ps, issue, req.Profile, formats, claim)
	if err != nil {
		claim.release(r.Context())
		return err
	}
	w.Header().Set("Location", "/v1/certificates/"+resp.serial)
	return writeJSONBytes(w, http.StatusCreated, resp.body)
}

// checkBuild validates a build request field by field (every problem at
// once) and returns the issue request and bundle formats.
func (a *API) checkBuild(req buildRequest, set string) (pki.IssueRequest, []pki.BundleFormat, error) {
	var errs []FieldError
	bad := func(field, detail string) { errs = append(errs, FieldError{Field: field, Detail: detail}) }
	if err := certid.CheckAppID(req.AppID); err != nil {
		bad("appId", err.Error())
	}
	if req.BuildID == "" {
		bad("buildId", "is required")
	}
	for _, f := range []struct{ name, v string }{{"buildId", req.BuildID}, {"buildUser", req.BuildUser},
		{"buildHost", req.BuildHost}, {"sdkVersion", req.SDKVersion}} {
		if err := pki.CheckBuildField(f.v); err != nil {
			bad(f.name, err.Error())
		}
	}
	build := certid.BuildInfo{ID: req.BuildID, User: req.BuildUser, Host: req.BuildHost, SDK: req.SDKVersion, Date: a.Now()}
	if req.BuildDate != "" {
		d, err := time.Parse(time.RFC3339, req.BuildDate)
		if err != nil {
			bad("buildDate", "must be an RFC 3339 time, e.g. 2026-12-05T10:00:00Z")
		}
		build.Date = d
	}
	formats, ok := bundleProfiles[req.Profile]
	if !ok {
		bad("profile", "must be modern, android, ios, legacy or both")
	}
	validFor := pki.DefaultLeafValidity
	if req.ValidFor != "" {
		d, err := time.ParseDuration(req.ValidFor)
		if err != nil || d < time.Minute {
			bad("validFor", "must be a duration of at least 1m, e.g. 8760h")
		}
		validFor = d
	}
	if len(errs) > 0 {
		return pki.IssueRequest{}, nil, invalid("the build request has problems", errs...)
	}
	return pki.IssueRequest{FusionSet: set, AppID: req.AppID, Build: build, ValidFor: validFor}, formats, nil
}

// issued is a build's response, encoded once: written now and, sealed,
// replayed for a retry.
type issued struct {
	serial string
	body   []byte
}

// issueBuild issues, checks the certificate against the set, encodes the
// bundles, signs the record and commits it all.
func (a *API) issueBuild(ctx context.Context, c *auth.Caller, ps *publishedSet, req pki.IssueRequest,
	profile string, formats []pki.BundleFormat, claim *idemClaim) (*issued, error) {
	if ps.appID != req.AppID {
		return nil, invalidField("appId", fmt.Sprintf("fusion set %q is for app_id %q", req.FusionSet, ps.appID))
	}
	ca, err := a.Authorities.CA(ctx, req.FusionSet)
	if errors.Is(err, authority.ErrNoCA) {
		return nil, invalid(fmt.Sprintf("fusion set %q has no CA on this server (import the CA it trusts with mcc server ca import)", req.FusionSet))
	}
	if err != nil {
		return nil, err
	}
	ca.Now = a.Now
	if now := a.Now(); now.Before(ca.Cert.NotBefore) {
		// The server's clock went back past its CA's start (a clock step,
		// a restored VM): nothing the request can fix, and no 500.
		return nil, &Problem{Name: "unavailable", Status: http.StatusServiceUnavailable,
			Detail: "the fusion set's CA is valid from " + ca.Cert.NotBefore.UTC().Format(time.RFC3339) +
				" but this server's clock says " + now.UTC().Format(time.RFC3339) + ": check the server's clock"}
	}
	if end := a.Now().Add(req.ValidFor); end.After(ca.Cert.NotAfter) {
		return nil, invalidField("validFor", "the certificate would outlive its CA (valid until "+ca.Cert.NotAfter.UTC().Format(time.RFC3339)+")")
	}
	iss, err := ca.Issue(req)
	if err != nil {
		return nil, err
	}
	var rejected *setguard.RejectedError
	if err := ps.guard.Check(ctx, iss); errors.As(err, &rejected) {
		return nil, invalid(rejected.Error() + "; nothing was issued")
	} else if err != nil {
		return nil, err
	}
	bundles := make([]*pki.Bundle, len(formats))
	for i, f := range formats {
		if bundles[i], err = pki.EncodeBundle(iss, f); err != nil {
			return nil, err
		}
	}
	in := pki.RecordInput{Issued: iss, Bundle: bundles[0], BundleFile: bundleFileName(req, bundles[0].Params.Format), Protections: ps.protections}
	if len(bundles) == 2 {
		in.Legacy, in.LegacyFile = bundles[1], bundleFileName(req, bundles[1].Params.Format)
	}
	rec, err := ca.NewRecord(in)
	if err != nil {
		return nil, err
	}
	recData, err := rec.Encode()
	if err != nil {
		return nil, err
	}
	row := store.Certificate{
		Serial: rec.Certificate.Serial, SHA256: rec.Certificate.SHA256, FusionSet: req.FusionSet, AppID: req.AppID,
		BuildID: req.Build.ID, Kind: store.KindBuild, Profile: profile,
		NotBefore: iss.Cert.NotBefore, NotAfter: iss.Cert.NotAfter, IssuedAt: rec.IssuedAt, IssuedBy: c.TokenName,
		CertPEM: rec.Certificate.PEM, Record: string(recData),
	}
	resp := buildResponse{Certificate: certificateOf(row, a.Now()), Bundle: bundleOf(bundles[0]), Record: recData}
	if len(bundles) == 2 {
		lb := bundleOf(bundles[1])
		resp.LegacyBundle = &lb
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	body = append(body, '\n')
	err = a.DB.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.InsertCertificate(ctx, row); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(ctx, store.AuditEntry{Time: rec.IssuedAt, Actor: c.Actor(), Action: store.AuditCertIssue,
			Subject: "certificate/" + row.Serial, Detail: map[string]any{
				"fusionSet": row.FusionSet, "appId": row.AppID, "buildId": row.BuildID, "profile": profile,
				"sha256": row.SHA256, "notAfter": row.NotAfter, "setVersion": ps.version,
			}}); err != nil {
			return err
		}
		return claim.complete(ctx, tx, http.StatusCreated, body)
	})
	if err != nil {
		return nil, err
	}
	return &issued{serial: row.Serial, body: body}, nil
}

func bundleOf(b *pki.Bundle) bundleJSON {
	return bundleJSON{Format: b.Params.Format, SHA256: b.SHA256, Data: b.Data, Password: b.Password}
}

// bundleFileName is the bundle's name in the record: what `mcc issue
// --server` writes by default, "<app>-<build>.p12" ("-legacy" for 3DES),
// with characters a file name should not hold replaced.
func bundleFileName(req pki.IssueRequest, f pki.BundleFormat) string {
	name := req.AppID + "-" + req.Build.ID
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
	switch f {
	case pki.FormatLegacyDES:
		name += "-legacy"
	case pki.FormatLegacyEnveloped:
		return name + ".p12e" // not a PKCS#12 file until the app opens it
	}
	return name + ".p12"
}

// writeJSONBytes answers an already encoded JSON body.
func writeJSONBytes(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

// publishedSet is a fusion set's newest published version, compiled, with
// the protections its records state.
type publishedSet struct {
	version     int64
	appID       string
	set         *fusion.Set // the compiled set (installs policy, prefixes)
	guard       *setguard.Guard
	protections *pki.Protections
}

// setCache caches compiled versions by set, document hash and CA, so
// issuance does not parse YAML per request; a new version or another CA is
// another key. Bounded: cleared when full (versions change rarely). Each
// API has its own, since the compiled engine reads the API's clock.
type setCache struct {
	sync.Mutex
	m map[string]*publishedSet
}

const maxCompiledSets = 256

// publishedSet loads (or takes from the cache) the newest version of set.
// A set never published is a 404.
func (a *API) publishedSet(ctx context.Context, set string) (*publishedSet, error) {
	v, err := a.DB.SetVersionOf(ctx, set, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("fusion set " + quoteForDetail(set) + " is not published on this server")
	}
	if err != nil {
		return nil, err
	}
	key := set + "\x00" + v.SHA256 + "\x00" + v.CACertPEM
	a.sets.Lock()
	ps := a.sets.m[key]
	a.sets.Unlock()
	if ps != nil {
		return ps, nil
	}
	if ps, err = compileSet(v, a.Now); err != nil {
		return nil, err
	}
	a.sets.Lock()
	if a.sets.m == nil || len(a.sets.m) >= maxCompiledSets {
		a.sets.m = map[string]*publishedSet{}
	}
	a.sets.m[key] = ps
	a.sets.Unlock()
	return ps, nil
}

// compileSet compiles a stored version the way publishing did: a set
// without trusted_ca trusts the server's CA for it. Its guard checks
// certificates at clock's time.
func compileSet(v store.SetSummary, clock func() time.Time) (*publishedSet, error) {
	set := v.FusionSet
	cand, probs := parseCandidate([]byte(v.Document), set)
	if len(probs) > 0 {
		return nil, fmt.Errorf("stored fusion set %q version %d does not load: %v", set, v.Version, probs)
	}
	cfg, probs, err := cand.compile(func(string) (*x509.Certificate, error) {
		if v.CACertPEM == "" {
			return nil, fmt.Errorf("stored fusion set %q version %d has no CA", set, v.Version)
		}
		return pki.ParseCertificatePEM([]byte(v.CACertPEM))
	})
	if err != nil {
		return nil, err
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("stored fusion set %q version %d does not compile: %v", set, v.Version, probs)
	}
	s, ok := cfg.Sets[set]
	if !ok {
		return nil, fmt.Errorf("stored fusion set %q version %d does not hold the set", set, v.Version)
	}
	g, err := setguard.NewAt(cfg, set, s.AppID, clock)
	if err != nil {
		return nil, err
	}
	p := *g.Protections
	p.Source = "fusion-sets/" + set + "/versions/" + strconv.FormatInt(v.Version, 10)
	p.SourceSHA256 = v.SHA256
	return &publishedSet{version: v.Version, appID: s.AppID, set: s, guard: g, protections: &p}, nil
}
