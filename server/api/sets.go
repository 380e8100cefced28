package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/store"
)

// routesSetsTokensAudit registers H2's areas: fusion sets, tokens and the
// audit log.
func (a *API) routesSetsTokensAudit() {
	a.routesSets()
	a.routesTokens()
	a.routesAudit()
}

// routesSets registers the fusion set routes: versioned documents,
// published with If-Match, each set with its own CA.
func (a *API) routesSets() {
	a.route("GET", "/v1/fusion-sets", auth.ScopeRead, a.listSets)
	a.route("GET", "/v1/fusion-sets/{set}", auth.ScopeRead, a.getSet)
	a.route("PUT", "/v1/fusion-sets/{set}", auth.ScopeAdmin, a.publishSet)
	a.route("POST", "/v1/validate", auth.ScopeRead, a.validateSet)
	a.route("GET", "/v1/fusion-sets/{set}/versions", auth.ScopeRead, a.listSetVersions)
	a.route("GET", "/v1/fusion-sets/{set}/versions/{version}", auth.ScopeRead, a.getSetVersion)
	a.route("GET", "/v1/fusion-sets/{set}/ca.pem", "", a.getSetCA)
}

// maxCommentLen bounds a publish comment.
const maxCommentLen = 1024

// fusionSetJSON is a fusion set's newest version.
type fusionSetJSON struct {
	ID        string    `json:"id"`
	Version   int64     `json:"version"`
	SHA256    string    `json:"sha256"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
	CA        *caJSON   `json:"ca,omitempty"`
	Document  string    `json:"document,omitempty"`
}

type caJSON struct {
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"notAfter"`
}

// setVersionJSON is one entry of a set's history.
type setVersionJSON struct {
	Version   int64     `json:"version"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"createdAt"`
	Actor     string    `json:"actor"`
	Comment   string    `json:"comment"`
	Changes   []string  `json:"changes"`
	Document  string    `json:"document,omitempty"`
}

func toSetJSON(s store.SetSummary) (fusionSetJSON, error) {
	out := fusionSetJSON{ID: s.FusionSet, Version: s.Version, SHA256: s.SHA256, UpdatedAt: s.Created.UTC(),
		UpdatedBy: s.Actor, Document: s.Document}
	if s.CACertPEM != "" {
		cert, err := pki.ParseCertificatePEM([]byte(s.CACertPEM))
		if err != nil {
			return out, err
		}
		out.CA = toCAJSON(cert)
	}
	return out, nil
}

func toCAJSON(cert *x509.Certificate) *caJSON {
	return &caJSON{Fingerprint: pki.Fingerprint(cert.Raw), Subject: cert.Subject.String(), NotAfter: cert.NotAfter.UTC()}
}

func toVersionJSON(v store.SetVersion) setVersionJSON {
	changes := v.Changes
	if changes == nil {
		changes = []string{}
	}
	return setVersionJSON{Version: v.Version, SHA256: v.SHA256, CreatedAt: v.Created.UTC(), Actor: v.Actor,
		Comment: v.Comment, Changes: changes, Document: v.Document}
}

// etag is a set version's entity tag.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// pathSet reads {set}; an id no set can have is simply not found.
func pathSet(r *http.Request) (string, error) {
	set := r.PathValue("set")
	if certid.CheckSetID(set) != nil {
		return "", notFound("no such fusion set")
	}
	return set, nil
}

// setCursor is the position in the set list: the last id seen.
type setCursor struct {
	After string `json:"a"`
}

func (a *API) listSets(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	q := r.URL.Query()
	if err := knownParams(q, "limit", "cursor"); err != nil {
		return err
	}
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	var cur setCursor
	if err := decodeCursor(q.Get("cursor"), &cur); err != nil {
		return err
	}
	if cur.After != "" && certid.CheckSetID(cur.After) != nil {
		return &Problem{Name: "invalid-cursor", Status: http.StatusBadRequest, Detail: "cursor is not one this server issued"}
	}
	sets, err := a.DB.ListSets(r.Context(), cur.After, limit+1)
	if err != nil {
		return err
	}
	out := page[fusionSetJSON]{Items: []fusionSetJSON{}}
	for i, s := range sets {
		if i == limit {
			out.NextCursor = encodeCursor(setCursor{After: sets[limit-1].FusionSet})
			break
		}
		j, err := toSetJSON(s)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, j)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getSet(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	s, err := a.DB.SetVersionOf(r.Context(), set, 0)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no such fusion set")
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(s.Version))
	if m := r.Header.Get("If-None-Match"); m != "" && etagMatches(m, s.Version) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	j, err := toSetJSON(s)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, j)
}

// versionCursor is the position in a set's history: the last version seen.
type versionCursor struct {
	Before int64 `json:"b"`
}

func (a *API) listSetVersions(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	q := r.URL.Query()
	if err := knownParams(q, "limit", "cursor"); err != nil {
		return err
	}
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	var cur versionCursor
	if err := decodeCursor(q.Get("cursor"), &cur); err != nil {
		return err
	}
	if cur.Before < 0 || (q.Get("cursor") != "" && cur.Before == 0) {
		return &Problem{Name: "invalid-cursor", Status: http.StatusBadRequest, Detail: "cursor is not one this server issued"}
	}
	versions, err := a.DB.SetHistory(r.Context(), set, cur.Before, limit+1)
	if err != nil {
		return err
	}
	if len(versions) == 0 && cur.Before == 0 {
		return notFound("no such fusion set")
	}
	out := page[setVersionJSON]{Items: []setVersionJSON{}}
	for i, v := range versions {
		if i == limit {
			out.NextCursor = encodeCursor(versionCursor{Before: versions[limit-1].Version})
			break
		}
		out.Items = append(out.Items, toVersionJSON(v))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getSetVersion(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	version, err := strconv.ParseInt(r.PathValue("version"), 10, 64)
	if err != nil || version < 1 {
		return notFound("no such version")
	}
	s, err := a.DB.SetVersionOf(r.Context(), set, version)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no such version")
	}
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(s.Version))
	return writeJSON(w, http.StatusOK, toVersionJSON(s.SetVersion))
}

// getSetCA answers the set's CA certificate: public, since it is what
// gateways and devices trust anyway.
func (a *API) getSetCA(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	cert, err := a.Authorities.Cert(r.Context(), set)
	if errors.Is(err, authority.ErrNoCA) {
		return notFound("the fusion set has no CA")
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	return err
}

// documentRequest is the JSON form of a document upload.
type documentRequest struct {
	Document string `json:"document"`
	Comment  string `json:"comment,omitempty"`
}

// readDocument reads a fusion file upload: the YAML itself, or JSON with
// the document and a comment.
func readDocument(r *http.Request) (doc []byte, comment string, err error) {
	mt, _, perr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	yamlBody := perr == nil && (mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml" || mt == "text/x-yaml")
	jsonBody := perr == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
	if !yamlBody && !jsonBody {
		return nil, "", &Problem{Name: "unsupported-media-type", Status: http.StatusUnsupportedMediaType,
			Detail: `send the fusion file as application/yaml, or application/json {"document": "...", "comment": "..."}`}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, "", bodyError(err)
	}
	if yamlBody {
		if len(body) == 0 {
			return nil, "", &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "the request body is empty"}
		}
		// YAML may come as UTF-16; the stored version is text the
		// database keeps and the history shows, so UTF-8 only, no NUL.
		if !utf8.Valid(body) || bytes.IndexByte(body, 0) >= 0 {
			return nil, "", &Problem{Name: "malformed-body", Status: http.StatusBadRequest, Detail: "the fusion file must be UTF-8 text without NUL bytes"}
		}
		return body, "", nil
	}
	var req documentRequest
	if err := decodeJSONBytes(body, &req); err != nil {
		return nil, "", err
	}
	if req.Document == "" {
		return nil, "", invalidField("document", "required: the fusion file's YAML")
	}
	if strings.IndexByte(req.Document, 0) >= 0 {
		return nil, "", invalidField("document", "must not hold NUL bytes")
	}
	if len(req.Comment) > maxCommentLen {
		return nil, "", invalidField("comment", "at most "+strconv.Itoa(maxCommentLen)+" bytes")
	}
	if strings.ContainsFunc(req.Comment, func(c rune) bool { return unicode.IsControl(c) && c != '\n' && c != '\t' }) {
		return nil, "", invalidField("comment", "must not hold control characters")
	}
	return []byte(req.Document), req.Comment, nil
}

func (a *API) validateSet(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	raw, _, err := readDocument(r)
	if err != nil {
		return err
	}
	cand, probs := parseCandidate(raw, "")
	if len(probs) == 0 {
		// A set without trusted_ca is checked with its CA, or a stand-in
		// when it has none yet: validating never creates a CA.
		var standIn *x509.Certificate
		_, probs, err = cand.compile(func(set string) (*x509.Certificate, error) {
			cert, err := a.Authorities.Cert(r.Context(), set)
			if !errors.Is(err, authority.ErrNoCA) {
				return cert, err
			}
			if standIn == nil {
				ca, err := pki.NewCA(pki.CAOptions{Name: authority.CAName(set)})
				if err != nil {
					return nil, err
				}
				standIn = ca.Cert
			}
			return standIn, nil
		})
		if err != nil {
			return err
		}
	}
	if probs == nil {
		probs = []FieldError{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"valid": len(probs) == 0, "problems": probs})
}

// publishSet stores a new version of a set. The first publish creates the
// set's CA; a later one needs If-Match with the current version, so two
// admins editing at once do not overwrite each other.
func (a *API) publishSet(w http.ResponseWriter, r *http.Request, c *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	set := r.PathValue("set")
	if err := certid.CheckSetID(set); err != nil {
		return invalidField("set", err.Error())
	}
	raw, comment, err := readDocument(r)
	if err != nil {
		return err
	}
	cond := preconditionsOf(r)
	cand, probs := parseCandidate(raw, set)
	if len(probs) > 0 {
		return invalid("the document has problems", probs...)
	}
	sum := sha256.Sum256(raw)
	var v store.SetVersion
	var caCert *x509.Certificate
	err = a.DB.Tx(r.Context(), func(tx *store.Tx) error {
		prev, err := tx.LatestSetVersion(r.Context(), set)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if p := cond.check(exists, prev.Version); p != nil {
			return p
		}
		if caCert, err = a.Authorities.Ensure(r.Context(), tx, set, c.Actor()); err != nil {
			return err
		}
		cfg, probs, err := cand.compile(func(string) (*x509.Certificate, error) { return caCert, nil })
		if err != nil {
			return err
		}
		if len(probs) > 0 {
			return invalid("the document has problems", probs...)
		}
		if !trusts(cfg.Sets[set].CACerts, caCert) {
			return invalid("the document has problems", FieldError{Field: "fusion_sets[0].trusted_ca",
				Line:   lineOf(cand.root, "fusion_sets[0].trusted_ca"),
				Detail: "must include this server's CA for the set (GET /v1/fusion-sets/" + set + "/ca.pem), or be left out to use it"})
		}
		var prevDoc []byte
		if exists {
			prevDoc = []byte(prev.Document)
		}
		changes, err := changedPaths(prevDoc, raw)
		if err != nil {
			return err
		}
		v = store.SetVersion{FusionSet: set, Version: prev.Version + 1, Document: string(raw), SHA256: hex.EncodeToString(sum[:]),
			Created: a.Now().UTC(), Actor: c.Actor(), Comment: comment, Changes: changes}
		if err := tx.InsertSetVersion(r.Context(), v); err != nil {
			if store.IsUniqueViolation(err) {
				return &Problem{Name: "precondition-failed", Status: http.StatusPreconditionFailed,
					Detail: "the fusion set changed while this version was being published; read it again"}
			}
			return err
		}
		_, err = tx.AppendAudit(r.Context(), store.AuditEntry{Time: v.Created, Actor: c.Actor(), Action: store.AuditSetPublish,
			Subject: "fusion-set/" + set, Detail: publishDetail(v)})
		return err
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if v.Version == 1 {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/fusion-sets/"+set)
	}
	w.Header().Set("ETag", etag(v.Version))
	out, err := toSetJSON(store.SetSummary{SetVersion: v})
	if err != nil {
		return err
	}
	out.CA, out.Document = toCAJSON(caCert), ""
	return writeJSON(w, status, out)
}

// maxAuditChanges bounds the change list an audit entry carries (the
// version row keeps all of them).
const maxAuditChanges = 100

func publishDetail(v store.SetVersion) map[string]any {
	d := map[string]any{"version": v.Version, "sha256": v.SHA256}
	changes := v.Changes
	if len(changes) > maxAuditChanges {
		d["changesOmitted"] = len(changes) - maxAuditChanges
		changes = changes[:maxAuditChanges]
	}
	d["changes"] = changes
	if v.Comment != "" {
		d["comment"] = v.Comment
	}
	return d
}

// trusts reports whether ca is among the trust anchors.
func trusts(anchors []*x509.Certificate, ca *x509.Certificate) bool {
	for _, c := range anchors {
		if c.Equal(ca) {
			return true
		}
	}
	return false
}

// preconditions are a publish's If-Match / If-None-Match headers.
type preconditions struct {
	ifMatch, ifNoneMatch string
}

func preconditionsOf(r *http.Request) preconditions {
	return preconditions{ifMatch: r.Header.Get("If-Match"), ifNoneMatch: r.Header.Get("If-None-Match")}
}

// check applies the headers to the set's state: a change of an existing
// set must say which version it changes.
func (p preconditions) check(exists bool, current int64) *Problem {
	failed := func(detail string) *Problem {
		return &Problem{Name: "precondition-failed", Status: http.StatusPreconditionFailed, Detail: detail}
	}
	if !exists {
		if p.ifMatch != "" {
			return failed("the fusion set does not exist yet (If-Match); publish it with If-None-Match: *")
		}
		return nil
	}
	if p.ifNoneMatch != "" && etagMatches(p.ifNoneMatch, current) {
		return failed("the fusion set exists (If-None-Match); its version is " + etag(current))
	}
	if p.ifMatch == "" {
		return &Problem{Name: "precondition-required", Status: http.StatusPreconditionRequired,
			Detail: "the fusion set exists: send If-Match with its ETag (" + etag(current) + ") so a concurrent change is not overwritten"}
	}
	if !etagMatches(p.ifMatch, current) {
		return failed("the fusion set is at version " + etag(current) + ", not the one in If-Match; read it again")
	}
	return nil
}

// etagMatches reports whether an If-Match / If-None-Match header names
// version: "*", or a list of strong entity tags.
func etagMatches(header string, version int64) bool {
	want := etag(version)
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || t == want {
			return true
		}
	}
	return false
}
