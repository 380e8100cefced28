package envoyext

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/secure"
)

// AdminHandler serves the admin port:
//
//	/healthz  200 "ok" (never needs the token: load balancers probe it)
//	/metrics  Prometheus text format
//	/status   JSON Status (config version, last reload and its error, store,
//	          sinks, access-log streams, certificate cache)
//
// When token is not empty, /metrics and /status want
// "Authorization: Bearer <token>", checked in constant time by the check
// every mcc admin endpoint shares (secure.BearerToken), which leaks neither
// the token nor its length.
func (s *Service) AdminHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", secure.BearerToken(token, "mcc authz admin", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})))
	mux.Handle("GET /status", secure.BearerToken(token, "mcc authz admin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s.Status()); err != nil {
			s.log.Debug("writing status", zap.Error(err))
		}
	})))
	return mux
}
