package serve

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// AdminHandler serves the admin port:
//
//	/healthz  200 "ok" (never needs the token: load balancers probe it)
//	/metrics  Prometheus text format, from the control plane's own registry
//	/status   JSON Status
//
// When token is not empty, /metrics and /status want
// "Authorization: Bearer <token>".
func (cp *ControlPlane) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", requireToken(token, promhttp.HandlerFor(cp.metrics.registry, promhttp.HandlerOpts{})))
	mux.Handle("GET /status", requireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(cp.Status()); err != nil {
			cp.log.Debug("writing status", zap.Error(err))
		}
	})))
	return mux
}

// requireToken checks the bearer token in constant time. Both sides are
// hashed first so that the comparison does not leak the token's length.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mcc xds admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
