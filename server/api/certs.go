package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

func (a *API) routesCerts() {
	a.route("GET", "/v1/certificates", auth.ScopeRead, a.listCertificates)
	a.route("GET", "/v1/certificates/{serial}", auth.ScopeRead, a.getCertificate)
}

// certificateJSON is a Certificate of the API.
type certificateJSON struct {
	Serial           string     `json:"serial"`
	SHA256           string     `json:"sha256"`
	FusionSet        string     `json:"fusionSet"`
	AppID            string     `json:"appId"`
	BuildID          string     `json:"buildId"`
	Kind             string     `json:"kind"`
	Profile          string     `json:"profile"`
	Status           string     `json:"status"`
	NotBefore        time.Time  `json:"notBefore"`
	NotAfter         time.Time  `json:"notAfter"`
	IssuedAt         time.Time  `json:"issuedAt"`
	IssuedBy         string     `json:"issuedBy"`
	RevokedAt        *time.Time `json:"revokedAt,omitempty"`
	RevocationReason string     `json:"revocationReason,omitempty"`
	InstallID        string     `json:"installId,omitempty"`
	BuildSerial      string     `json:"buildSerial,omitempty"`
}

// certificateDetailJSON is one certificate with its PEM and record.
type certificateDetailJSON struct {
	certificateJSON
	PEM    string          `json:"pem"`
	Record json.RawMessage `json:"record"`
}

func certificateOf(c store.Certificate, now time.Time) certificateJSON {
	out := certificateJSON{
		Serial: c.Serial, SHA256: c.SHA256, FusionSet: c.FusionSet, AppID: c.AppID, BuildID: c.BuildID,
		Kind: c.Kind, Profile: c.Profile, Status: c.Status(now),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, IssuedAt: c.IssuedAt, IssuedBy: c.IssuedBy,
		RevocationReason: c.RevocationReason, InstallID: c.InstallID, BuildSerial: c.BuildSerial,
	}
	if !c.RevokedAt.IsZero() {
		t := c.RevokedAt
		out.RevokedAt = &t
	}
	return out
}

// certStatuses are the values of ?status=.
var certStatuses = []string{store.StatusValid, store.StatusRevoked, store.StatusExpired}

func (a *API) listCertificates(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	q := r.URL.Query()
	if err := knownParams(q, "fusionSet", "appId", "buildId", "status", "issuedAfter", "issuedBefore",
		"expiresAfter", "expiresBefore", "limit", "cursor"); err != nil {
		return err
	}
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	f := store.CertFilter{FusionSet: q.Get("fusionSet"), AppID: q.Get("appId"), BuildID: q.Get("buildId"),
		Status: q.Get("status"), Now: a.Now(), Limit: limit + 1}
	if f.Status != "" && !slices.Contains(certStatuses, f.Status) {
		return invalidField("status", "must be valid, revoked or expired")
	}
	for name, dst := range map[string]*time.Time{"issuedAfter": &f.IssuedAfter, "issuedBefore": &f.IssuedBefore,
		"expiresAfter": &f.ExpiresAfter, "expiresBefore": &f.ExpiresBefore} {
		if *dst, err = queryTime(q, name); err != nil {
			return err
		}
	}
	if c := q.Get("cursor"); c != "" {
		f.After = &store.CertPosition{}
		if err := decodeCursor(c, f.After); err != nil {
			return err
		}
	}
	certs, err := a.DB.ListCertificates(r.Context(), f)
	if err != nil {
		return err
	}
	out := page[certificateJSON]{Items: []certificateJSON{}}
	if len(certs) > limit {
		certs = certs[:limit]
		last := certs[limit-1]
		out.NextCursor = encodeCursor(store.CertPosition{IssuedNS: store.NS(last.IssuedAt), Serial: last.Serial})
	}
	for _, c := range certs {
		out.Items = append(out.Items, certificateOf(c, f.Now))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getCertificate(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	serial, err := pathSerial(r.PathValue("serial"))
	if err != nil {
		return err
	}
	c, err := a.DB.Certificate(r.Context(), serial)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no certificate with serial " + serial)
	}
	if err != nil {
		return err
	}
	record := json.RawMessage(c.Record)
	if c.Record == "" {
		record = json.RawMessage("null") // an install certificate has no certified record
	}
	return writeJSON(w, http.StatusOK, certificateDetailJSON{
		certificateJSON: certificateOf(c, a.Now()), PEM: c.CertPEM, Record: record,
	})
}

// pathSerial reads a serial number in any form pki.ParseSerial takes
// (colons, upper case) and returns the stored form. A malformed one is a
// 404 like an unknown one: there is no such resource.
func pathSerial(s string) (string, error) {
	n, err := pki.ParseSerial(s)
	if err != nil {
		return "", notFound("no certificate with serial " + quoteForDetail(s))
	}
	return pki.FormatSerial(n), nil
}

// quoteForDetail shortens and quotes client input echoed in a detail.
func quoteForDetail(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// routesCertificateAreas registers builds, certificates, revocations, CRLs
// and records (areas.go calls it).
func (a *API) routesCertificateAreas() {
	a.routesBuilds()
	a.routesCerts()
	a.routesRevocations()
	a.routesCRL()
	a.routesRecords()
}
