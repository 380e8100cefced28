package serve

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
//	/metrics  Prometheus text format, from the control plane's own registry
//	/status   JSON Status
//
// When token is not empty, /metrics and /status want
// "Authorization: Bearer <token>".
func (cp *ControlPlane) AdminHandler(token string) http.Handler {
	// One constant-time check for every admin endpoint of mcc (it hashes
	// both sides, so neither the token nor its length leaks).
	requireToken := func(next http.Handler) http.Handler { return secure.BearerToken(token, "mcc xds admin", next) }
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", requireToken(promhttp.HandlerFor(cp.metrics.registry, promhttp.HandlerOpts{})))
	mux.Handle("GET /status", requireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(cp.Status()); err != nil {
			cp.log.Debug("writing status", zap.Error(err))
		}
	})))
	return mux
}
