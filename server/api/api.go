// Package api is mcc server's HTTP API under /v1: the DEV-API that CI/CD
// pipelines call with a token. Every route is registered through route, so
// Routes lists them with their scopes (the OpenAPI test walks that list),
// and every error is an RFC 9457 problem written in one place.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/pki/attestation"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

// DefaultMaxBody bounds a request body unless a route says otherwise.
const DefaultMaxBody = 1 << 20

// Deps is what the API works with.
type Deps struct {
	DB      *store.DB
	Tokens  *auth.Tokens
	Limiter *auth.Limiter
	// AddressLimiter limits the enrollment routes per client address
	// (IPv4 /32, IPv6 /64): they take no token, so the address is all
	// there is to count (nil: no limit).
	AddressLimiter *auth.Limiter
	Keys           *keys.Sealer
	Authorities    *authority.Authorities
	Log            *zap.Logger
	Now            func() time.Time
	// Verifiers check enrollment attestations, one per format.
	Verifiers []attestation.Verifier
	// Version is reported by /v1/health.
	Version string
	// MaxBody bounds request bodies (DefaultMaxBody when zero); routes
	// that take batches set their own.
	MaxBody int64
}

// API is the handler set.
type API struct {
	Deps
	// largeBodies holds a slot for each request being served on a route
	// with a large body limit (bodyLimits): a batch of events takes tens
	// of MiB while it is checked and stored, so a few at once bound the
	// memory one token can make the server use.
	largeBodies chan struct{}
	// refusalEvents bounds the events stored for refused enrollments per
	// fusion set, reason and address: a client sending one bad
	// certificate after another stores a few events a minute, not a row
	// per request.
	refusalEvents *auth.Limiter
	// sets holds the compiled fusion sets.
	sets setCache
	mux  *http.ServeMux
	// routes are registered once; Routes reports them.
	routes []Route
}

// Route is one registered route.
type Route struct {
	Method  string
	Pattern string     // Go ServeMux pattern path, e.g. /v1/fusion-sets/{set}
	Scope   auth.Scope // "" = public
}

// handlerFunc is an API handler. It returns an error instead of writing
// one: a *Problem (or an error wrapping one) is answered as such, any other
// error is logged and answered 500 "internal" without details.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *auth.Caller) error

// New builds the API with every route registered.
func New(d Deps) *API {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MaxBody == 0 {
		d.MaxBody = DefaultMaxBody
	}
	if d.Verifiers == nil {
		// Android Key Attestation against Google's embedded roots, unless
		// the caller gives its own verifiers (other roots, tests).
		if v, err := attestation.NewAndroidVerifier(); err == nil {
			d.Verifiers = []attestation.Verifier{v}
		} else {
			d.Log.Error("no Android attestation verifier: attestations will be refused", zap.Error(err))
		}
	}
	a := &API{Deps: d, mux: http.NewServeMux(), largeBodies: make(chan struct{}, maxLargeBodies),
		refusalEvents: auth.NewLimiterClock(refusalEventsPerMinute/60.0, refusalEventsPerMinute, d.Now)}
	a.register()
	return a
}

var (
	routesOnce sync.Once
	routeTable []Route
)

// Routes lists every route with its scope.
func Routes() []Route {
	routesOnce.Do(func() {
		a := &API{mux: http.NewServeMux()}
		a.register()
		routeTable = a.routes
	})
	return routeTable
}

// register adds every area's routes. Each area has its own file and its
// own routesX method.
func (a *API) register() {
	a.route("GET", "/v1/health", "", a.health)
	a.routesAreas()
	// Anything else under /v1 is a problem, not the mux's plain text.
	a.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, a.Log, notFound("no such route"))
	})
}

// route registers h for method and path, requiring scope ("" = public).
func (a *API) route(method, path string, scope auth.Scope, h handlerFunc) {
	a.routes = append(a.routes, Route{Method: method, Pattern: path, Scope: scope})
	a.mux.Handle(method+" "+path, a.wrap(scope, h))
}

// Handler is the API as an http.Handler.
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The mux answers a wrong method with its own 405 text; find out
		// first so the answer is a problem with an Allow header.
		if _, pattern := a.mux.Handler(r); (pattern == "" || pattern == "/v1/") && strings.HasPrefix(r.URL.Path, "/v1/") {
			if allow := a.allowed(r); allow != "" {
				w.Header().Set("Allow", allow)
				writeProblem(w, r, a.Log, &Problem{Name: "method-not-allowed", Status: http.StatusMethodNotAllowed, Detail: r.Method + " is not allowed here"})
				return
			}
		}
		a.mux.ServeHTTP(w, r)
	})
}

// EnrollHandler serves the enrollment listener: the client-certificate
// routes and nothing else (a 404 problem), so no token route is reachable
// there and no enrollment route is reachable without a certificate.
func (a *API) EnrollHandler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range a.routes {
		if r.Scope == auth.ScopeClientCert {
			mux.Handle(r.Method+" "+r.Pattern, a.mux)
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, a.Log, notFound("the enrollment listener serves the enroll and renew routes only"))
	})
	return mux
}

// allowed lists the methods that would match r's path.
func (a *API) allowed(r *http.Request) string {
	var methods []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
		probe := r.Clone(context.Background())
		probe.Method = m
		if _, p := a.mux.Handler(probe); p != "" && strings.HasPrefix(p, m+" ") {
			methods = append(methods, m)
		}
	}
	return strings.Join(methods, ", ")
}

// wrap adds what every route does: a request id, the body limit,
// authentication, the scope check and the rate limit, and turns the
// handler's error into a problem.
func (a *API) wrap(scope auth.Scope, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", requestID())
		w.Header().Set("Cache-Control", "no-store")
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, a.maxBody(r))
		}
		var caller *auth.Caller
		if scope == auth.ScopeClientCert {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				writeProblem(w, r, a.Log, &Problem{Name: "unauthorized", Status: http.StatusUnauthorized,
					Detail: "this route takes the app's client certificate: call the enrollment listener (--enroll-listen) over mTLS"})
				return
			}
			if ok, wait := a.AddressLimiter.Allow(threat.AddressKey(remoteIP(r), 32, 64)); !ok {
				writeProblem(w, r, a.Log, &Problem{Name: "rate-limited", Status: http.StatusTooManyRequests,
					Detail: "too many enrollment requests from this address", retryAfter: strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second)))})
				return
			}
		} else if scope != "" {
			c, prob := a.authenticate(r, scope)
			if prob != nil {
				writeProblem(w, r, a.Log, prob)
				return
			}
			caller = c
		}
		if _, large := bodyLimits[r.Method+" "+r.URL.Path]; large {
			select {
			case a.largeBodies <- struct{}{}:
				defer func() { <-a.largeBodies }()
			default:
				writeProblem(w, r, a.Log, &Problem{Name: "rate-limited", Status: http.StatusTooManyRequests,
					Detail: "the server is storing other large batches; retry", retryAfter: "1"})
				return
			}
		}
		if err := h(w, r, caller); err != nil {
			writeProblem(w, r, a.Log, err)
		}
	})
}

// refusalEventsPerMinute is how many events of refused enrollments are
// stored per fusion set, reason and address each minute (with as many in a
// burst); the refusals themselves are all answered.
const refusalEventsPerMinute = 10

// maxLargeBodies is how many requests with a large body (bodyLimits) are
// served at once; more are answered 429 with Retry-After (the webhook
// sink retries them).
const maxLargeBodies = 4

// maxBody is the body limit of r: the route's own (bodyLimits) or MaxBody.
func (a *API) maxBody(r *http.Request) int64 {
	if n, ok := bodyLimits[r.Method+" "+r.URL.Path]; ok {
		return n
	}
	return a.MaxBody
}

// bodyLimits are the routes whose bodies may exceed the default: batches.
var bodyLimits = map[string]int64{
	"POST /v1/events": 8 << 20,
}

// authenticate checks the bearer token, the scope and the rate limit.
func (a *API) authenticate(r *http.Request, scope auth.Scope) (*auth.Caller, *Problem) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" || a.Tokens == nil {
		return nil, unauthorized()
	}
	c, err := a.Tokens.Verify(r.Context(), strings.TrimSpace(bearer))
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthorized) {
			a.Log.Error("verifying a token", zap.Error(err))
			return nil, &Problem{Name: "unavailable", Status: http.StatusServiceUnavailable, Detail: "the token store is not reachable; try again"}
		}
		return nil, unauthorized()
	}
	if a.Limiter != nil {
		if ok, wait := a.Limiter.Allow(c.TokenID); !ok {
			secs := int((wait + time.Second - 1) / time.Second)
			if secs < 1 {
				secs = 1
			}
			return nil, &Problem{Name: "rate-limited", Status: http.StatusTooManyRequests,
				Detail: "too many requests for this token", retryAfter: strconv.Itoa(secs)}
		}
	}
	if !c.Has(scope) {
		return nil, &Problem{Name: "forbidden", Status: http.StatusForbidden,
			Detail: "the token lacks the " + string(scope) + " scope", Extra: map[string]any{"scope": string(scope)}}
	}
	return c, nil
}

func unauthorized() *Problem {
	return &Problem{Name: "unauthorized", Status: http.StatusUnauthorized,
		Detail: "a valid bearer token is required", wwwAuthenticate: `Bearer realm="mcc"`}
}

func requestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// health answers /v1/health.
func (a *API) health(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	v, err := a.DB.SchemaVersion(r.Context())
	if err != nil {
		return &Problem{Name: "unavailable", Status: http.StatusServiceUnavailable, Detail: "the database is not reachable"}
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "version": a.Version, "database": string(a.DB.Dialect()), "schemaVersion": v,
	})
}
