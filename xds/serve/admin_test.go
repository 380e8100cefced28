package serve_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/xdstest"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestAdmin(t *testing.T) {
	const token = "s3cret-admin-token"
	h := start(t, token)
	f := xdstest.NewFixture(t, 1)
	h.publish(t, "cfg-1", f.Build(t))
	v1 := version(t, h, "edge")
	lv1 := typeVersion(t, h, "edge", resourcev3.ListenerType)
	f.AddRoute("bad.example.com", "app-0")
	c, err := xdstest.StartSotW(context.Background(), dial(t, h.addr), node("envoy-admin", "edge"), rejectHost("bad.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h, func(s serve.Status) bool { return groupStatus(s, "edge").LastACKedVersion == v1 })
	h.publish(t, "cfg-2", f.Build(t))
	waitStatus(t, h, func(s serve.Status) bool { return groupStatus(s, "edge").RolledBackFrom != "" })
	h.cp.ConfigError(errString("sets.yaml:12: gateway.listeners[0].port: must be a port number"))

	// Health needs no token.
	if code, body := get(t, h.admin.URL+"/healthz", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	// Everything else does, and a wrong one is refused.
	for _, path := range []string{"/metrics", "/status"} {
		for _, tok := range []string{"", "wrong", token + "x"} {
			if code, _ := get(t, h.admin.URL+path, tok); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q = %d, want 401", path, tok, code)
			}
		}
	}

	code, metrics := get(t, h.admin.URL+"/metrics", token)
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"mcc_xds_connected_nodes 1",
		`mcc_xds_streams{protocol="sotw"} 1`,
		`mcc_xds_pushes_total{type="listener"}`,
		`mcc_xds_acks_total{type="listener"}`,
		`mcc_xds_nacks_total{type="listener"} 1`,
		"mcc_xds_rollbacks_total 1",
		"mcc_xds_snapshot_build_seconds_count 2",
		"mcc_xds_config_load_errors_total 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "go_goroutines") {
		t.Error("/metrics uses the global registry")
	}

	code, body := get(t, h.admin.URL+"/status", token)
	if code != 200 {
		t.Fatalf("/status = %d", code)
	}
	var s serve.Status
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, body)
	}
	if s.Config.Version != "cfg-2" || !strings.Contains(s.Config.LastLoadError, "gateway.listeners[0].port") {
		t.Errorf("config status = %+v", s.Config)
	}
	if len(s.Nodes) != 1 || s.Nodes[0].ID != "envoy-admin" || s.Nodes[0].Acked["listener"] != lv1 ||
		s.Nodes[0].LastNACK == nil || !strings.Contains(s.Nodes[0].LastNACK.Message, "bad.example.com") {
		t.Errorf("node status = %+v", s.Nodes)
	}
	if g := groupStatus(s, "edge"); g.Version != v1 {
		t.Errorf("group status = %+v", g)
	}
	for _, field := range []string{`"acked"`, `"last_nack"`, `"last_load_error"`, `"rolled_back_from"`} {
		if !strings.Contains(body, field) {
			t.Errorf("status JSON lacks %s", field)
		}
	}
	if strings.Contains(body, "PRIVATE KEY") {
		t.Error("status leaks a private key")
	}
}

func TestAdminWithoutToken(t *testing.T) {
	h := start(t, "")
	if code, _ := get(t, h.admin.URL+"/status", ""); code != 200 {
		t.Errorf("/status without a configured token = %d", code)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
