package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// This file holds the API calls and their wire types, one per route the
// client uses, named after the API's JSON.

// Health is GET /v1/health.
type Health struct {
	Status        string `json:"status"`
	Version       string `json:"version"`
	Database      string `json:"database"`
	SchemaVersion int    `json:"schemaVersion"`
}

// Health asks whether the server is up (no token needed, one is sent).
func (c *Client) Health(ctx context.Context) (*Health, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/health"})
	if err != nil {
		return nil, err
	}
	var h Health
	return &h, decode(resp, &h)
}

// BuildRequest is the body of POST /v1/fusion-sets/{set}/builds.
type BuildRequest struct {
	AppID      string     `json:"appId"`
	BuildID    string     `json:"buildId"`
	BuildDate  *time.Time `json:"buildDate,omitempty"`
	BuildUser  string     `json:"buildUser,omitempty"`
	BuildHost  string     `json:"buildHost,omitempty"`
	SDKVersion string     `json:"sdkVersion,omitempty"`
	// Profile is "modern" (default), "android" or "ios" (the 3DES bundle
	// in an AES-256-GCM envelope), "legacy" (a bare 3DES bundle) or "both"
	// (modern and legacy).
	Profile  string `json:"profile,omitempty"`
	ValidFor string `json:"validFor,omitempty"`
}

// Bundle profiles of BuildRequest.Profile.
const (
	ProfileModern = "modern"
	ProfileLegacy = "legacy"
	ProfileBoth   = "both"
)

// Build is the answer to an issuance: the bundle, its password (shown
// once) and the signed certified-secure record.
type Build struct {
	Certificate  Certificate `json:"certificate"`
	Bundle       *Bundle     `json:"bundle"`
	LegacyBundle *Bundle     `json:"legacyBundle,omitempty"`
	// Record is the signed record as the server sent it; decode it with
	// pki's Record type and write its Encode() to keep it verifiable.
	Record json.RawMessage `json:"record"`
	// Replayed is true when the server answered from its idempotency
	// store: this build was issued by an earlier request with the key.
	Replayed bool `json:"-"`
}

// Bundle is a PKCS#12 file and its password. Both are secret.
type Bundle struct {
	Format   string `json:"format"`
	SHA256   string `json:"sha256"`
	Data     []byte `json:"data"` // base64 on the wire
	Password string `json:"password"`
}

// IssueBuild issues a build's certificate. idempotencyKey (may be empty)
// makes a retried request return the same build instead of a second
// certificate.
func (c *Client) IssueBuild(ctx context.Context, fusionSet string, b BuildRequest, idempotencyKey string) (*Build, error) {
	r := request{method: http.MethodPost, path: "/v1/fusion-sets/" + url.PathEscape(fusionSet) + "/builds", body: b}
	if idempotencyKey != "" {
		r.header = http.Header{"Idempotency-Key": {idempotencyKey}}
		r.repeatable = true
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var out Build
	if err := decode(resp, &out); err != nil {
		return nil, err
	}
	out.Replayed = resp.header.Get("Idempotent-Replayed") == "true"
	return &out, nil
}

// Certificate is one issued certificate as the API lists it.
type Certificate struct {
	Serial           string     `json:"serial"`
	SHA256           string     `json:"sha256"`
	FusionSet        string     `json:"fusionSet"`
	AppID            string     `json:"appId"`
	BuildID          string     `json:"buildId"`
	Kind             string     `json:"kind"`
	Profile          string     `json:"profile"`
	Status           string     `json:"status"` // valid, revoked, expired
	NotBefore        time.Time  `json:"notBefore"`
	NotAfter         time.Time  `json:"notAfter"`
	IssuedAt         time.Time  `json:"issuedAt"`
	IssuedBy         string     `json:"issuedBy"`
	RevokedAt        *time.Time `json:"revokedAt,omitempty"`
	RevocationReason string     `json:"revocationReason,omitempty"`
	// PEM and Record are set by Certificate (one serial), not by lists.
	PEM    string          `json:"pem,omitempty"`
	Record json.RawMessage `json:"record,omitempty"`
}

// Certificate gets one certificate with its PEM and record.
func (c *Client) Certificate(ctx context.Context, serial string) (*Certificate, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/certificates/" + url.PathEscape(serial)})
	if err != nil {
		return nil, err
	}
	var out Certificate
	return &out, decode(resp, &out)
}

// CertificateFilter selects certificates; zero fields do not filter.
type CertificateFilter struct {
	FusionSet, AppID, BuildID   string
	Status                      string // valid, revoked, expired
	IssuedAfter, IssuedBefore   time.Time
	ExpiresAfter, ExpiresBefore time.Time
	Limit                       int
	Cursor                      string
}

func (f CertificateFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"fusionSet": f.FusionSet, "appId": f.AppID, "buildId": f.BuildID, "status": f.Status, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, t := range map[string]time.Time{"issuedAfter": f.IssuedAfter, "issuedBefore": f.IssuedBefore, "expiresAfter": f.ExpiresAfter, "expiresBefore": f.ExpiresBefore} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// CertificatePage is one page of a certificate list.
type CertificatePage struct {
	Items      []Certificate `json:"items"`
	NextCursor string        `json:"nextCursor,omitempty"`
}

// Certificates lists one page; pass NextCursor back in Cursor for the next.
func (c *Client) Certificates(ctx context.Context, f CertificateFilter) (*CertificatePage, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/certificates", query: f.query()})
	if err != nil {
		return nil, err
	}
	var out CertificatePage
	return &out, decode(resp, &out)
}

// RevokeRequest is the body of POST /v1/revocations: exactly one of
// Serial, Serials and Build.
type RevokeRequest struct {
	Reason  string      `json:"reason,omitempty"`
	Serial  string      `json:"serial,omitempty"`
	Serials []string    `json:"serials,omitempty"`
	Build   *BuildRef   `json:"build,omitempty"`
	Install *InstallRef `json:"install,omitempty"`
}

// BuildRef names every certificate of one build: its build certificates
// and its installs' (Kinds narrows it to "build" or "install").
type BuildRef struct {
	FusionSet string   `json:"fusionSet"`
	AppID     string   `json:"appId"`
	BuildID   string   `json:"buildId"`
	Kinds     []string `json:"kinds,omitempty"`
}

// InstallRef names every certificate of one install.
type InstallRef struct {
	FusionSet string `json:"fusionSet"`
	InstallID string `json:"installId"`
}

// RevokeResult says what a revocation changed.
type RevokeResult struct {
	Revoked        []string     `json:"revoked"`
	AlreadyRevoked []string     `json:"alreadyRevoked"`
	CRLs           []CRLVersion `json:"crls"`
}

// CRLVersion is a CRL the revocation re-signed.
type CRLVersion struct {
	FusionSet string `json:"fusionSet"`
	Number    int64  `json:"number"`
}

// Revoke revokes certificates. Revoking twice is harmless (the second
// answer lists them as already revoked), so a failed attempt is retried.
func (c *Client) Revoke(ctx context.Context, r RevokeRequest) (*RevokeResult, error) {
	resp, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/revocations", body: r, repeatable: true})
	if err != nil {
		return nil, err
	}
	var out RevokeResult
	return &out, decode(resp, &out)
}

// RecordVerification is the server's verdict on a record.
type RecordVerification struct {
	Valid   bool            `json:"valid"`
	Check   string          `json:"check,omitempty"` // the failed pki.RecordCheck
	Detail  string          `json:"detail,omitempty"`
	Record  json.RawMessage `json:"record,omitempty"`
	Revoked bool            `json:"revoked"`
}

// VerifyRecord asks the server to check a record (the file's bytes, sent
// as they are, since the signature covers their exact encoding) and,
// when bundle is not nil, that the bundle opens with password to the
// record's certificate.
func (c *Client) VerifyRecord(ctx context.Context, record []byte, bundle []byte, password string) (*RecordVerification, error) {
	if !json.Valid(record) {
		return &RecordVerification{Valid: false, Check: "record", Detail: "the record is not JSON"}, nil
	}
	body := struct {
		Record   json.RawMessage `json:"record"`
		Bundle   []byte          `json:"bundle,omitempty"`
		Password string          `json:"password,omitempty"`
	}{Record: record, Bundle: bundle, Password: password}
	resp, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/records/verify", body: body, repeatable: true})
	if err != nil {
		return nil, err
	}
	var out RecordVerification
	return &out, decode(resp, &out)
}

// CAPEM gets the CA certificate of a fusion set (a public route).
func (c *Client) CAPEM(ctx context.Context, fusionSet string) ([]byte, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/fusion-sets/" + url.PathEscape(fusionSet) + "/ca.pem"})
	if err != nil {
		return nil, err
	}
	return resp.body, nil
}
