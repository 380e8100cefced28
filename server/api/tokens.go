package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// routesTokens registers the token routes: admins manage the tokens that
// pipelines and gateways call with.
func (a *API) routesTokens() {
	a.route("GET", "/v1/tokens", auth.ScopeAdmin, a.listTokens)
	a.route("POST", "/v1/tokens", auth.ScopeAdmin, a.createToken)
	a.route("DELETE", "/v1/tokens/{id}", auth.ScopeAdmin, a.revokeToken)
}

// tokenJSON is a token as the API shows it: never its secret.
type tokenJSON struct {
	ID         string       `json:"id"`
	Name       string       `json:"name"`
	Scopes     []auth.Scope `json:"scopes"`
	CreatedAt  time.Time    `json:"createdAt"`
	ExpiresAt  *time.Time   `json:"expiresAt,omitempty"`
	LastUsedAt *time.Time   `json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time   `json:"revokedAt,omitempty"`
	CreatedBy  string       `json:"createdBy"`
}

func toTokenJSON(t auth.Token) tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Scopes: t.Scopes, CreatedAt: t.CreatedAt.UTC(),
		ExpiresAt: optTime(t.ExpiresAt), LastUsedAt: optTime(t.LastUsedAt), RevokedAt: optTime(t.RevokedAt), CreatedBy: t.CreatedBy}
}

// optTime is an optional time in JSON: absent when zero.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	toks, err := a.Tokens.List(r.Context())
	if err != nil {
		return err
	}
	items := make([]tokenJSON, len(toks))
	for i, t := range toks {
		items[i] = toTokenJSON(t)
	}
	return writeJSON(w, http.StatusOK, page[tokenJSON]{Items: items})
}

type createTokenRequest struct {
	Name      string       `json:"name"`
	Scopes    []auth.Scope `json:"scopes"`
	ExpiresIn string       `json:"expiresIn,omitempty"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c *auth.Caller) error {
	var req createTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	var expiresIn time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil {
			return invalidField("expiresIn", `must be a duration such as "720h"`)
		}
		expiresIn = d
	}
	secret, tok, err := a.Tokens.Create(r.Context(), req.Name, req.Scopes, expiresIn, c.Actor())
	if err != nil {
		return tokenProblem(err)
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"token": toTokenJSON(tok), "secret": secret})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, c *auth.Caller) error {
	if err := knownParams(r.URL.Query()); err != nil {
		return err
	}
	tok, err := a.Tokens.Revoke(r.Context(), r.PathValue("id"), c.Actor())
	if err != nil {
		return tokenProblem(err)
	}
	return writeJSON(w, http.StatusOK, toTokenJSON(tok))
}

// tokenProblem maps the token store's errors to problems.
func tokenProblem(err error) error {
	var inv *auth.InvalidError
	switch {
	case errors.As(err, &inv):
		return invalidField(inv.Field, inv.Detail)
	case errors.Is(err, auth.ErrNameTaken):
		return &Problem{Name: "conflict", Status: http.StatusConflict, Detail: "a token with this name exists (names stay taken after revocation)"}
	case errors.Is(err, store.ErrNotFound):
		return notFound("no such token")
	}
	return err
}
