package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/store"
)

func (a *API) routesRecords() {
	a.route("POST", "/v1/records/verify", auth.ScopeRead, a.verifyRecord)
}

// recordVerifyRequest is a certified record as the API or `mcc issue`
// gave it, optionally with a bundle and its password.
type recordVerifyRequest struct {
	Record   json.RawMessage `json:"record"`
	Bundle   *string         `json:"bundle,omitempty"` // base64
	Password *string         `json:"password,omitempty"`
}

type recordVerifyResponse struct {
	Valid   bool            `json:"valid"`
	Check   pki.RecordCheck `json:"check,omitempty"`
	Detail  string          `json:"detail,omitempty"`
	Record  *pki.Record     `json:"record,omitempty"`
	Revoked bool            `json:"revoked"`
}

// verifyRecord runs `mcc certify verify` on an uploaded record: the CA of
// the record's fusion set on this server, its signature, the exact signed
// encoding, the embedded certificate, and with a bundle that the bundle is
// the certified one and opens to the certificate and its key. A record
// that fails a check is a 200 with valid false and the check's name: the
// request was fine, the record is not.
func (a *API) verifyRecord(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	var req recordVerifyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if len(req.Record) == 0 || string(req.Record) == "null" {
		return invalidField("record", "is required")
	}
	if (req.Bundle == nil) != (req.Password == nil) {
		return invalidField("password", "a bundle is verified with its password: give both or neither")
	}
	var bundle *pki.BundleToVerify
	if req.Bundle != nil {
		data, err := base64.StdEncoding.DecodeString(*req.Bundle)
		if err != nil {
			return invalidField("bundle", "must be the PKCS#12 file in base64")
		}
		bundle = &pki.BundleToVerify{Data: data, Password: *req.Password}
	}
	var head struct {
		FusionSet string `json:"fusionSet"`
	}
	if err := json.Unmarshal(req.Record, &head); err != nil {
		return invalidField("record", "must be a certified record object")
	}
	fail := func(check pki.RecordCheck, detail string) error {
		return writeJSON(w, http.StatusOK, recordVerifyResponse{Check: check, Detail: detail})
	}
	if certid.CheckSetID(head.FusionSet) != nil {
		return fail(pki.CheckParse, "the record names no valid fusion set")
	}
	ca, err := a.Authorities.Cert(r.Context(), head.FusionSet)
	if errors.Is(err, authority.ErrNoCA) {
		return fail(pki.CheckCA, "fusion set "+quoteForDetail(head.FusionSet)+" has no CA on this server")
	}
	if err != nil {
		return err
	}
	data, err := pki.CanonicalRecord(req.Record)
	if err != nil {
		return invalidField("record", err.Error())
	}
	// The bundle's hash is checked against the signed record before the
	// bundle is opened, so only bundles this CA certified get their key
	// derivation run: a crafted bundle with a huge iteration count never
	// reaches PBKDF2.
	rec, err := pki.VerifyRecord(data, ca, bundle)
	var ve *pki.VerifyError
	if errors.As(err, &ve) {
		return fail(ve.Check, ve.Msg)
	}
	if err != nil {
		return err
	}
	out := recordVerifyResponse{Valid: true, Record: rec}
	c, err := a.DB.Certificate(r.Context(), rec.Certificate.Serial)
	switch {
	case err == nil:
		out.Revoked = !c.RevokedAt.IsZero()
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
