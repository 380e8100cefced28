package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// maxRevokeSerials bounds one bulk revocation (one transaction).
const maxRevokeSerials = 1000

func (a *API) routesRevocations() {
	a.route("POST", "/v1/revocations", auth.ScopeRevoke, a.revoke)
}

// revocationRequest names what to revoke: exactly one of Serial, Serials,
// Build and Install.
type revocationRequest struct {
	Reason  string      `json:"reason,omitempty"`
	Serial  string      `json:"serial,omitempty"`
	Serials []string    `json:"serials,omitempty"`
	Build   *buildRef   `json:"build,omitempty"`
	Install *installRef `json:"install,omitempty"`
}

// buildRef names every certificate of one build: its build certificates
// (which stops its enrollments) and the install certificates enrolled
// with them. Kinds narrows it to "build" or "install" certificates.
type buildRef struct {
	FusionSet string   `json:"fusionSet"`
	AppID     string   `json:"appId"`
	BuildID   string   `json:"buildId"`
	Kinds     []string `json:"kinds,omitempty"`
}

// installRef names every certificate of one install.
type installRef struct {
	FusionSet string `json:"fusionSet"`
	InstallID string `json:"installId"`
}

type revocationResult struct {
	Revoked        []string        `json:"revoked"`
	AlreadyRevoked []string        `json:"alreadyRevoked"`
	CRLs           []crlNumberJSON `json:"crls"`
}

type crlNumberJSON struct {
	FusionSet string `json:"fusionSet"`
	Number    int64  `json:"number"`
}

// revoke revokes certificates atomically: every named certificate, or
// none when one is unknown. In the same transaction the CRL of every
// fusion set concerned is re-signed, so a committed revocation is always
// in the set's CRL (no window where a crash after the commit leaves the
// CRL behind), and the CRL numbers of two instances never collide.
func (a *API) revoke(w http.ResponseWriter, r *http.Request, c *auth.Caller) error {
	var req revocationRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	code, err := pki.ParseReason(req.Reason)
	if err != nil {
		return invalidField("reason", fmt.Sprintf("unknown reason; one of %v", pki.ReasonNames()))
	}
	reason := pki.ReasonName(code)
	serials, err := revocationSerials(req)
	if err != nil {
		return err
	}
	var res revocationResult
	err = a.DB.Tx(r.Context(), func(tx *store.Tx) error {
		res = revocationResult{Revoked: []string{}, AlreadyRevoked: []string{}, CRLs: []crlNumberJSON{}}
		certs, err := a.revocationTargets(r.Context(), tx, req, serials)
		if err != nil {
			return err
		}
		return a.revokeIn(r.Context(), tx, c, certs, reason, &res)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// namedSerial is a serial in stored form and the request field naming it.
type namedSerial struct{ serial, field string }

// revocationSerials checks the request's shape and normalizes its serials
// (nil for a build); a serial named twice counts once.
func revocationSerials(req revocationRequest) ([]namedSerial, error) {
	given := 0
	for _, g := range []bool{req.Serial != "", req.Serials != nil, req.Build != nil, req.Install != nil} {
		if g {
			given++
		}
	}
	if given != 1 {
		return nil, invalid("give exactly one of serial, serials, build and install",
			FieldError{Field: "serial", Detail: "give exactly one of serial, serials, build and install"})
	}
	switch {
	case req.Build != nil:
		if req.Build.FusionSet == "" || req.Build.AppID == "" || req.Build.BuildID == "" {
			return nil, invalidField("build", "fusionSet, appId and buildId are all required")
		}
		for i, k := range req.Build.Kinds {
			if k != store.KindBuild && k != store.KindInstall {
				return nil, invalidField(fmt.Sprintf("build.kinds[%d]", i), "want build or install")
			}
		}
		return nil, nil
	case req.Install != nil:
		if req.Install.FusionSet == "" || certid.CheckInstallID(req.Install.InstallID) != nil {
			return nil, invalidField("install", "fusionSet and a valid installId are required")
		}
		return nil, nil
	case req.Serial != "":
		s, err := parseSerial(req.Serial)
		if err != nil {
			return nil, invalidField("serial", err.Error())
		}
		return []namedSerial{{s, "serial"}}, nil
	}
	if len(req.Serials) == 0 || len(req.Serials) > maxRevokeSerials {
		return nil, invalidField("serials", fmt.Sprintf("give 1 to %d serials", maxRevokeSerials))
	}
	var out []namedSerial
	seen := map[string]bool{}
	var errs []FieldError
	for i, raw := range req.Serials {
		field := fmt.Sprintf("serials[%d]", i)
		f, err := parseSerial(raw)
		if err != nil {
			errs = append(errs, FieldError{Field: field, Detail: err.Error()})
			continue
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, namedSerial{f, field})
		}
	}
	if len(errs) > 0 {
		return nil, invalid("some serials are malformed; nothing was revoked", errs...)
	}
	return out, nil
}

// maxSerialText bounds a serial as sent (20 bytes with colons and a
// prefix fit), so a problem never echoes a long input.
const maxSerialText = 72

// parseSerial reads a serial as pki.ParseSerial does and returns its
// stored form.
func parseSerial(raw string) (string, error) {
	if len(raw) > maxSerialText {
		return "", errors.New("is not a serial number (too long)")
	}
	n, err := pki.ParseSerial(raw)
	if err != nil {
		return "", err
	}
	return pki.FormatSerial(n), nil
}

// revocationTargets reads the certificates to revoke in tx, in the order
// named (a build's by serial); an unknown serial is a 422 naming it.
func (a *API) revocationTargets(ctx context.Context, tx *store.Tx, req revocationRequest, serials []namedSerial) ([]store.Certificate, error) {
	if req.Build != nil || req.Install != nil {
		var found map[string]store.Certificate
		var err error
		field, kinds := "install", []string(nil)
		if req.Build != nil {
			field, kinds = "build", req.Build.Kinds
			found, err = tx.BuildCertificates(ctx, req.Build.FusionSet, req.Build.AppID, req.Build.BuildID)
		} else {
			found, err = tx.InstallCertificates(ctx, req.Install.FusionSet, req.Install.InstallID)
		}
		if err != nil {
			return nil, err
		}
		out := make([]store.Certificate, 0, len(found))
		for _, c := range found {
			if len(kinds) == 0 || slices.Contains(kinds, c.Kind) {
				out = append(out, c)
			}
		}
		if len(out) == 0 {
			return nil, invalidField(field, "no certificate of this "+field+" was issued")
		}
		slices.SortFunc(out, func(x, y store.Certificate) int { return strings.Compare(x.Serial, y.Serial) })
		return out, nil
	}
	keys := make([]string, len(serials))
	for i, s := range serials {
		keys[i] = s.serial
	}
	found, err := tx.CertificatesBySerial(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make([]store.Certificate, 0, len(serials))
	var errs []FieldError
	for _, s := range serials {
		c, ok := found[s.serial]
		if !ok {
			errs = append(errs, FieldError{Field: s.field, Detail: "no certificate with serial " + s.serial})
			continue
		}
		out = append(out, c)
	}
	if len(errs) > 0 {
		return nil, invalid("unknown serials; nothing was revoked", errs...)
	}
	return out, nil
}

// revokeIn revokes certs in tx, audits each revocation and re-signs the
// CRL of every set concerned.
func (a *API) revokeIn(ctx context.Context, tx *store.Tx, c *auth.Caller, certs []store.Certificate, reason string, res *revocationResult) error {
	now := a.Now().UTC()
	var sets []string
	for _, cert := range certs {
		if !slices.Contains(sets, cert.FusionSet) {
			sets = append(sets, cert.FusionSet)
		}
	}
	slices.Sort(sets)
	// CRL rows first, in order, then the audit log (in AppendAudit): the
	// order RefreshCRLs takes them in, so two PostgreSQL instances never
	// wait on each other in a cycle.
	for _, set := range sets {
		if _, err := tx.LockCRL(ctx, set); err != nil {
			return err
		}
	}
	// Only a set that gained a revocation gets a new CRL: a retried
	// request must not bump the CRL number (gateways would fetch a list
	// that says nothing new).
	var changed []string
	for _, cert := range certs {
		done, err := tx.RevokeCertificate(ctx, cert.Serial, now, reason, c.Name())
		if err != nil {
			return err
		}
		if !done {
			res.AlreadyRevoked = append(res.AlreadyRevoked, cert.Serial)
			continue
		}
		if !slices.Contains(changed, cert.FusionSet) {
			changed = append(changed, cert.FusionSet)
		}
		res.Revoked = append(res.Revoked, cert.Serial)
		if _, err := tx.AppendAudit(ctx, store.AuditEntry{Time: now, Actor: c.Actor(), Action: store.AuditCertRevoke,
			Subject: "certificate/" + cert.Serial,
			Detail:  map[string]any{"fusionSet": cert.FusionSet, "appId": cert.AppID, "buildId": cert.BuildID, "reason": reason}}); err != nil {
			return err
		}
	}
	slices.Sort(changed)
	for _, set := range changed {
		crl, err := a.signCRL(ctx, tx, set, c.Actor(), false)
		if err != nil {
			return fmt.Errorf("re-signing the CRL of %s: %w", set, err)
		}
		res.CRLs = append(res.CRLs, crlNumberJSON{FusionSet: set, Number: crl.Number})
	}
	return nil
}
