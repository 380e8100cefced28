package envoyext

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"
)

// /status is behind the admin token and tells the config version, the last
// reload and its error (cleared by the next good load), the store and the
// sinks, like mcc xds's.
func TestStatusReportsReloads(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	h := startHarness(t, p.loadConfig(t, failSafeYAML(p.caFile())), nil)
	for _, token := range []string{"", "wrong", testMetricsToken + "x"} {
		req, _ := http.NewRequest("GET", h.adminURL+"/status", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/status with token %q: %d, want 401", token, resp.StatusCode)
		}
	}
	st := getStatus(t, h.adminURL, testMetricsToken)
	first := st.Config.Version
	if len(first) != 12 || st.Config.LoadedAt.IsZero() || st.Config.LastLoadError != "" || st.Store.Name != "memory" ||
		st.Store.Failing || len(st.Sinks) != 1 || st.Sinks[0].Sink == "" || st.CertCache.MaxBytes != DefaultCertCacheBytes {
		t.Fatalf("initial /status: %+v", st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.svc.Watch(ctx, 20*time.Millisecond)
	path := h.svc.Engine().Config().Path
	if err := os.WriteFile(path, []byte("fusion_sets:\n  - id: bank\n    mode: sideways\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, h.adminURL, func(st Status) bool { return st.Config.LastLoadError != "" })
	if st.Config.LastLoadErrorAt.IsZero() || st.Config.Version != first {
		t.Fatalf("after a bad file: %+v", st.Config)
	}
	if err := os.WriteFile(path, []byte(failSafeYAML(p.caFile())+"    message: changed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, h.adminURL, func(st Status) bool { return st.Config.LastLoadError == "" })
	if !st.Config.LastLoadErrorAt.IsZero() || st.Config.Version == first || len(st.Config.Version) != 12 {
		t.Fatalf("after a good file: %+v", st.Config)
	}
}
