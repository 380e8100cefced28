package console_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// views are the pages a session opens.
var views = []string{"/console/", "/console/overview", "/console/overview?range=1h", "/console/offenders",
	"/console/offenders?kind=build", "/console/events", "/console/events?externalId=req-a", "/console/builds",
	"/console/bans", "/console/gateways"}

const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// TestNothingWithoutSession: every view redirects to the sign-in page,
// the feed and the export answer 401, and only the sign-in page and the
// static files are served; every answer carries the CSP.
func TestNothingWithoutSession(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	for _, p := range views {
		resp, body := b.get(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/signin" {
			t.Errorf("GET %s without a session: %s %s, want 303 to /console/signin", p, resp.Status, resp.Header.Get("Location"))
		}
		if strings.Contains(body, "bank-") || resp.Header.Get("Content-Security-Policy") != wantCSP {
			t.Errorf("GET %s: body %q, CSP %q", p, body, resp.Header.Get("Content-Security-Policy"))
		}
	}
	for _, p := range []string{"/console/stream", "/console/stream?after=0", "/console/export", "/console/overview/charts?range=1h"} {
		if resp, _ := b.get(p, "Last-Event-ID", "0"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %s, want 401", p, resp.Status)
		}
	}
	// A forged or stale cookie is no session.
	u, _ := url.Parse(e.ts.URL + "/console/")
	for _, v := range []string{"x", strings.Repeat("A", 43), "", "../../etc"} {
		b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "mcc_console", Value: v, Path: "/console"}})
		if resp, _ := b.get("/console/overview"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("cookie %q opened the overview: %s", v, resp.Status)
		}
	}
	for _, p := range []string{"/console/signin", "/console/static/console.css", "/console/static/console.js"} {
		resp, _ := b.get(p)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != wantCSP {
			t.Errorf("GET %s: %s, CSP %q", p, resp.Status, resp.Header.Get("Content-Security-Policy"))
		}
	}
	if resp, _ := b.get("/console/static/"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("static directory listing: %s", resp.Status)
	}
	if resp, _ := b.get("/console"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /console: %s", resp.Status)
	}
	// The API is still the API.
	if resp, _ := b.get("/v1/health"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/health: %s", resp.Status)
	}
}

// TestSignIn: only a valid token with read opens a session, only from
// the console's origin; the cookie is HttpOnly, Secure, SameSite=Strict,
// scoped to /console; the store keeps only its hash.
func TestSignIn(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	for name, tok := range map[string]string{
		"wrong secret":     e.read[:len(e.read)-4] + "AAAA",
		"events:write":     e.writer,
		"empty":            "",
		"not a token":      "<script>alert(1)</script>",
		"very long (64 K)": strings.Repeat("m", 64<<10),
	} {
		resp, body := b.post("/console/signin", url.Values{"token": {tok}})
		if resp.StatusCode == http.StatusSeeOther || len(resp.Cookies()) > 0 {
			t.Errorf("%s: signed in (%s)", name, resp.Status)
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s: the token is echoed unescaped", name)
		}
	}
	// Cross-site and origin-less posts are refused before the token is read.
	for name, hdr := range map[string][]string{
		"other origin":   {"Origin", "https://evil.example"},
		"null origin":    {"Origin", "null"},
		"cross-site":     {"Sec-Fetch-Site", "cross-site"},
		"same-site only": {"Sec-Fetch-Site", "same-site"},
	} {
		resp, _ := b.post("/console/signin", url.Values{"token": {e.read}}, hdr...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", name, resp.Status)
		}
	}
	nob := e.browser(t)
	nob.origin = ""
	if resp, _ := nob.post("/console/signin", url.Values{"token": {e.read}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no Origin: %s, want 403", resp.Status)
	}

	c := b.signIn(e.read)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" {
		t.Fatalf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/console", c)
	}
	if _, err := e.srv.DB().Session(context.Background(), sessionHash(t, c)); err != nil {
		t.Fatalf("the session is not stored by its hash: %v", err)
	}
	var raw []byte
	rows, err := e.srv.DB().Query(context.Background(), `SELECT id_hash FROM console_sessions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(c.Value)) {
			t.Fatal("the session id is stored as it is")
		}
	}
	rows.Close()
	for _, p := range append(views, "/console/overview/charts?range=24h") {
		resp, body := b.get(p)
		if p == "/console/" {
			continue
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != wantCSP || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s signed in: %s, CSP %q, Cache-Control %q", p, resp.Status, resp.Header.Get("Content-Security-Policy"), resp.Header.Get("Cache-Control"))
		}
		// No inline script or style anywhere: the CSP would block it.
		for _, bad := range []string{"<script>", "style=", "<style", "onclick", "javascript:"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s holds %q", p, bad)
			}
		}
	}
}

// TestSignOutCSRF: sign-out needs the session's CSRF token and the
// console's origin; then the session is gone from the store.
func TestSignOutCSRF(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	c := b.signIn(e.read)
	csrf := b.csrf()
	other := e.browser(t)
	other.signIn(e.read)
	if oc := other.csrf(); oc == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	for name, try := range map[string]func() *http.Response{
		"no token": func() *http.Response { r, _ := b.post("/console/signout", nil); return r },
		"wrong token": func() *http.Response {
			r, _ := b.post("/console/signout", url.Values{"csrf": {csrf[:len(csrf)-2] + "AA"}})
			return r
		},
		"other session's token": func() *http.Response {
			r, _ := b.post("/console/signout", url.Values{"csrf": {other.csrf()}})
			return r
		},
		"cross origin": func() *http.Response {
			r, _ := b.post("/console/signout", url.Values{"csrf": {csrf}}, "Origin", "https://evil.example")
			return r
		},
		"GET": func() *http.Response { r, _ := b.get("/console/signout?csrf=" + url.QueryEscape(csrf)); return r },
	} {
		resp := try()
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %s, want refused", name, resp.Status)
		}
		if _, err := e.srv.DB().Session(context.Background(), sessionHash(t, c)); err != nil {
			t.Fatalf("%s ended the session: %v", name, err)
		}
	}
	resp, _ := b.post("/console/signout", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/signin" {
		t.Fatalf("sign-out: %s", resp.Status)
	}
	if _, err := e.srv.DB().Session(context.Background(), sessionHash(t, c)); err == nil {
		t.Fatal("the session is still stored after sign-out")
	}
	// The old cookie, replayed, opens nothing.
	replay := e.browser(t)
	u, _ := url.Parse(e.ts.URL + "/console/")
	replay.c.Jar.SetCookies(u, []*http.Cookie{c})
	if resp, _ := replay.get("/console/overview"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a signed-out cookie opened the overview: %s", resp.Status)
	}
}

// TestSessionEnds: a session ends at its expiry, and when its token is
// revoked.
func TestSessionEnds(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	b.signIn(e.read)
	if resp, _ := b.get("/console/overview"); resp.StatusCode != http.StatusOK {
		t.Fatalf("overview: %s", resp.Status)
	}
	e.clock.Add(12*time.Hour + time.Second)
	if resp, _ := b.get("/console/overview"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("overview after the session's expiry: %s", resp.Status)
	}
	b2 := e.browser(t)
	b2.signIn(e.admin)
	if resp, _ := b2.get("/console/events"); resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %s", resp.Status)
	}
	if _, err := e.srv.Tokens().Revoke(context.Background(), "admin", "test"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b2.get("/console/events"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("events after the token was revoked: %s", resp.Status)
	}
	if resp, _ := b2.get("/console/stream?after=0"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("feed after the token was revoked: %s", resp.Status)
	}

	// An open feed ends when its session does.
	b3 := e.browser(t)
	b3.signIn(e.read)
	resp, err := b3.c.Get(e.ts.URL + "/console/stream?after=0")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("feed: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if _, err := e.srv.Tokens().Revoke(context.Background(), "reader", "test"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(11 * time.Second)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("the feed of a revoked token did not end cleanly: %v", err)
	}
}

// TestBadFilters: a filter no event could match is refused, and what a
// URL carries is escaped where a page shows it.
func TestBadFilters(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	b.signIn(e.read)
	for _, p := range []string{"/console/overview?range=1y", "/console/events?fusionSet=" + strings.Repeat("x", 300),
		"/console/events?before=abc", "/console/events?before=-1_x", "/console/offenders?kind=doc", "/console/events?reason=%ff",
		"/console/overview/charts?range=1y", "/console/overview/charts?fusionSet=" + strings.Repeat("x", 300)} {
		if resp, _ := b.get(p); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %s, want 400", p, resp.Status)
		}
	}
	for _, p := range []string{"/console/stream?after=x", "/console/stream?after=-5", "/console/export?range=2d"} {
		if resp, _ := b.get(p); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %s, want 400", p, resp.Status)
		}
	}
	if resp, _ := b.get("/console/stream", "Last-Event-ID", "99999999999999999999"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("Last-Event-ID out of range: %s", resp.Status)
	}
	xss := `"><script>alert(1)</script>`
	for _, p := range []string{"/console/events?fusionSet=", "/console/overview?reason=", "/console/offenders?deviceId="} {
		resp, body := b.get(p + url.QueryEscape(xss))
		if resp.StatusCode != http.StatusOK || strings.Contains(body, "<script>alert") {
			t.Errorf("GET %s<xss>: %s, unescaped: %v", p, resp.Status, strings.Contains(body, "<script>alert"))
		}
	}
}
