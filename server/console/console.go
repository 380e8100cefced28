// Package console is mcc server's web console under /console (issue 14):
// server-rendered pages for operators, a little JavaScript for the live
// feed, and charts drawn by the server as SVG, all embedded in the
// binary. No page or data is served without a session: the sign-in page
// and its static assets are the only exceptions.
//
// Access is a bearer token with the read scope, traded once for a
// server-side session (session.go); every POST carries a CSRF token and
// must come from the console's own origin; every response carries a
// Content-Security-Policy that allows only the console's own script and
// style files.
package console

import (
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultSessionTTL is how long a sign-in lasts unless Deps says.
const DefaultSessionTTL = 12 * time.Hour

// Prefix is where the console is mounted.
const Prefix = "/console"

// Deps is what the console works with.
type Deps struct {
	DB     *store.DB
	Tokens *auth.Tokens
	Log    *zap.Logger
	Now    func() time.Time
	// SessionTTL is how long a session lasts after sign-in
	// (DefaultSessionTTL when zero); it ends sooner when its token is
	// revoked or expires.
	SessionTTL time.Duration
	// Bans is the gateways' shared store, for the bans view (nil: the
	// view says none is configured).
	Bans threat.BanAdmin
	// PollInterval is how often an open live feed asks the database for
	// new events (default 250 ms).
	PollInterval time.Duration
	// XDS are the mcc xds instances whose Envoy nodes the gateways view
	// shows (none: the view says how to add them).
	XDS []*XDSSource
}

// Console serves /console.
type Console struct {
	Deps
	mux       *http.ServeMux
	pages     map[string]*template.Template
	signins   *auth.Limiter
	streams   chan struct{} // a slot per open live feed
	staticSrv http.Handler
}

// maxStreams bounds the open live feeds of one server instance: each
// holds a connection and polls the database.
const maxStreams = 64

// New builds the console.
func New(d Deps) *Console {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.SessionTTL <= 0 {
		d.SessionTTL = DefaultSessionTTL
	}
	if d.PollInterval <= 0 {
		d.PollInterval = 250 * time.Millisecond
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	c := &Console{
		Deps:  d,
		mux:   http.NewServeMux(),
		pages: parsePages(),
		// Sign-in attempts per client address: a token secret cannot be
		// guessed, but each attempt is a database read.
		signins:   auth.NewLimiter(2, 10),
		streams:   make(chan struct{}, maxStreams),
		staticSrv: http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)),
	}
	c.routes()
	return c
}

func (c *Console) routes() {
	c.mux.HandleFunc("GET "+Prefix+"/static/", c.static)
	c.mux.HandleFunc("GET "+Prefix+"/signin", c.signinPage)
	c.mux.HandleFunc("POST "+Prefix+"/signin", c.signin)
	c.mux.Handle("POST "+Prefix+"/signout", c.action(c.signout))
	c.mux.Handle("GET "+Prefix+"/{$}", c.page(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, Prefix+"/overview", http.StatusSeeOther)
	}))
	c.mux.Handle("GET "+Prefix+"/overview", c.page(c.overview))
	c.mux.Handle("GET "+Prefix+"/overview/charts", c.data(c.overviewChartsFragment))
	c.mux.Handle("GET "+Prefix+"/offenders", c.page(c.offenders))
	c.mux.Handle("GET "+Prefix+"/events", c.page(c.events))
	c.mux.Handle("GET "+Prefix+"/builds", c.page(c.builds))
	c.mux.Handle("GET "+Prefix+"/bans", c.page(c.bans))
	c.mux.Handle("POST "+Prefix+"/bans/lift", c.action(c.liftBan))
	c.mux.Handle("GET "+Prefix+"/gateways", c.page(c.gateways))
	c.mux.Handle("GET "+Prefix+"/export", c.data(c.export))
	c.mux.Handle("GET "+Prefix+"/stream", c.data(c.stream))
	c.mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		// Unknown paths look the same with and without a session.
		http.Error(w, "not found", http.StatusNotFound)
	})
}

// csp allows the console's own files and nothing inline: an injected
// script or style attribute does not run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Handler serves every path under /console.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: under no-referrer browsers send
		// "Origin: null" on form posts, which the origin check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if r.URL.Path == Prefix {
			http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
			return
		}
		c.mux.ServeHTTP(w, r)
	})
}

func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	// A directory listing of the assets is nothing to hide, but nothing
	// to offer either.
	if len(r.URL.Path) > 0 && r.URL.Path[len(r.URL.Path)-1] == '/' {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "private, max-age=300")
	c.staticSrv.ServeHTTP(w, r)
}
