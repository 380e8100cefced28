package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// CookieName is the session cookie.
const CookieName = "mcc_console"

// sessionBytes is the length of a session id's secret.
const sessionBytes = 32

// session is a signed-in browser: the token it signed in with (its scopes
// as they were then; a token's scopes never change) and the CSRF token
// its forms carry.
type session struct {
	caller auth.Caller
	csrf   string
	idHash []byte
}

// csrfFor derives the CSRF token from the session secret. Only the
// browser holding the (HttpOnly) cookie and the server can compute it, and
// nothing but the secret's hash is stored.
func csrfFor(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mcc-console-csrf/v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// errNoSession is every reason a request has no valid session: no
// cookie, an unknown or expired one, or a revoked or expired token.
var errNoSession = errors.New("no session")

// lookup finds the request's session.
func (c *Console) lookup(r *http.Request) (*session, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, errNoSession
	}
	secret, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(secret) != sessionBytes {
		return nil, errNoSession
	}
	sum := sha256.Sum256(secret)
	row, err := c.DB.Session(r.Context(), sum[:])
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	now := c.Now()
	if !now.Before(row.Expires) {
		return nil, errNoSession
	}
	// A session lasts no longer than its token: revoking the token signs
	// its browsers out at their next request.
	tok, err := c.DB.TokenByID(r.Context(), row.TokenID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	if !tok.Revoked.IsZero() || (!tok.Expires.IsZero() && !now.Before(tok.Expires)) {
		return nil, errNoSession
	}
	scopes, err := auth.ParseScopes(row.Scopes)
	if err != nil {
		return nil, errNoSession
	}
	return &session{
		caller: auth.Caller{TokenID: row.TokenID, TokenName: row.TokenName, Scopes: scopes},
		csrf:   csrfFor(secret),
		idHash: sum[:],
	}, nil
}

// sameOrigin reports whether a state-changing request comes from the
// console's own pages: its Origin names this host (browsers send Origin
// on every POST), and Sec-Fetch-Site, when sent, says same-origin. A
// request without Origin is refused: it does not come from a browser
// page, and sign-in and actions are for browsers.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.Path != "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// maxFormBytes bounds a console form (sign-in, actions).
const maxFormBytes = 8 << 10

// signinPage shows the sign-in form.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signin", nil, map[string]any{"Title": "Sign in"})
}

// signin trades a token with the read scope for a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, "This form must be sent from the console's own page.")
		return
	}
	if ok, _ := c.signins.Allow(clientAddr(r)); !ok {
		c.render(w, r, http.StatusTooManyRequests, "signin", nil, map[string]any{"Title": "Sign in", "Error": "Too many attempts; wait a moment."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	caller, err := c.Tokens.Verify(r.Context(), strings.TrimSpace(r.PostForm.Get("token")))
	if err != nil && !errors.Is(err, auth.ErrUnauthorized) {
		c.Log.Error("console sign-in: verifying a token", zap.Error(err))
		c.fail(w, r, http.StatusServiceUnavailable, "The token store is not reachable; try again.")
		return
	}
	if err != nil || !caller.Has(auth.ScopeRead) {
		// One message for a wrong token and a token without read: the
		// form does not say which tokens exist.
		c.render(w, r, http.StatusUnauthorized, "signin", nil, map[string]any{"Title": "Sign in", "Error": "That token does not open the console (it needs the read scope)."})
		return
	}
	secret := make([]byte, sessionBytes)
	if _, err := rand.Read(secret); err != nil {
		c.fail(w, r, http.StatusInternalServerError, "No session could be made.")
		return
	}
	sum := sha256.Sum256(secret)
	now := c.Now()
	names := make([]string, len(caller.Scopes))
	for i, s := range caller.Scopes {
		names[i] = string(s)
	}
	err = c.DB.InsertSession(r.Context(), store.SessionRow{
		IDHash: sum[:], TokenID: caller.TokenID, TokenName: caller.TokenName,
		Scopes: strings.Join(names, ","), Created: now, Expires: now.Add(c.SessionTTL),
	})
	if err != nil {
		c.Log.Error("console sign-in: storing the session", zap.Error(err))
		c.fail(w, r, http.StatusServiceUnavailable, "The session could not be stored; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: base64.RawURLEncoding.EncodeToString(secret), Path: Prefix,
		MaxAge: int(c.SessionTTL / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	c.Log.Info("console sign-in", zap.String("token", caller.TokenName))
	http.Redirect(w, r, Prefix+"/overview", http.StatusSeeOther)
}

// signout ends the session.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.DB.DeleteSession(r.Context(), s.idHash); err != nil {
		c.Log.Error("console sign-out", zap.Error(err))
		c.fail(w, r, http.StatusServiceUnavailable, "The session could not be ended; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
}

// pageFunc is a view or action served to a session.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session)

// page serves a view to a session; without one the browser is sent to
// the sign-in page.
func (c *Console) page(h pageFunc) http.Handler {
	return c.withSession(h, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
	})
}

// data serves a stream or download to a session; without one it is a
// 401 (an EventSource or a script cannot follow a redirect to a form).
func (c *Console) data(h pageFunc) http.Handler {
	return c.withSession(h, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "sign in first", http.StatusUnauthorized)
	})
}

// action serves a POST to a session whose CSRF token the form carries,
// sent from the console's own origin.
func (c *Console) action(h pageFunc) http.Handler {
	return c.page(func(w http.ResponseWriter, r *http.Request, s *session) {
		if !sameOrigin(r) {
			c.fail(w, r, http.StatusForbidden, "This form must be sent from the console's own page.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
			c.fail(w, r, http.StatusForbidden, "The form is stale or was not sent by the console; reload the page.")
			return
		}
		h(w, r, s)
	})
}

func (c *Console) withSession(h pageFunc, none http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s, err := c.lookup(r)
		if errors.Is(err, errNoSession) {
			none(w, r)
			return
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				c.Log.Error("console: reading the session", zap.Error(err))
			}
			http.Error(w, "the session store is not reachable; try again", http.StatusServiceUnavailable)
			return
		}
		h(w, r, s)
	})
}

// clientAddr is the connection's address without its port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
