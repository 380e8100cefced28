package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// routesAudit registers the audit log routes: read the hash-chained log
// and check it.
func (a *API) routesAudit() {
	a.route("GET", "/v1/audit", auth.ScopeRead, a.listAudit)
	a.route("GET", "/v1/audit/verify", auth.ScopeRead, a.verifyAudit)
}

// auditCursor is the position in the log: the last sequence number seen.
type auditCursor struct {
	After int64 `json:"a"`
}

// listAudit answers entries after ?after= (or the cursor), oldest first.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	q := r.URL.Query()
	if err := knownParams(q, "after", "limit", "cursor"); err != nil {
		return err
	}
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	var cur auditCursor
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return invalidField("after", "must be a sequence number (0 or more)")
		}
		cur.After = n
	}
	if err := decodeCursor(q.Get("cursor"), &cur); err != nil {
		return err
	}
	if cur.After < 0 {
		return &Problem{Name: "invalid-cursor", Status: http.StatusBadRequest, Detail: "cursor is not one this server issued"}
	}
	// One more than the page tells whether there is a next page.
	entries, err := a.DB.ReadAudit(r.Context(), cur.After, limit+1)
	if err != nil {
		return err
	}
	out := page[store.AuditEntry]{Items: entries}
	if len(entries) > limit {
		out.Items = entries[:limit]
		out.NextCursor = encodeCursor(auditCursor{After: entries[limit-1].Seq})
	}
	if out.Items == nil {
		out.Items = []store.AuditEntry{}
	}
	return writeJSON(w, http.StatusOK, out)
}

// verifyAudit walks the whole chain. A broken chain is an answer (valid
// false, with where it breaks), not a server error.
func (a *API) verifyAudit(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	n, head, err := a.DB.VerifyAudit(r.Context())
	if err != nil {
		// VerifyAudit reports a broken link with an error of its own
		// (wrapping nothing); a wrapped error is the database failing.
		if errors.Unwrap(err) != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"valid": false, "entries": n, "head": head, "detail": err.Error()})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"valid": true, "entries": n, "head": head})
}
