package caddymod

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestPlaceholdersAndAccessLog: every decision sets the {http.mcc.*}
// placeholders; a decision with a reason also adds the mcc_* access log
// fields, and log_append puts the placeholders in every request's line.
func TestPlaceholdersAndAccessLog(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	sink := filepath.Join(dir, "events.jsonl")
	setFile := corp.WriteSetFile(t, "detection.yaml", func(sc *fusion.SetConfig) { sc.Mode = string(threat.ModeDetection) })
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf(`	log {
		output file %s
		format json
	}
	# Runs before fusion_set and gives the request its UUID, which then
	# becomes the event's externalID.
	header X-Request-Id {http.request.uuid}
	log_append decision {http.mcc.decision}
	log_append app_id {http.mcc.app_id}
	log_append build_id {http.mcc.build_id}
	fusion_set %s
	respond "decision={http.mcc.decision} reason={http.mcc.reason} set={http.mcc.fusion_set} app={http.mcc.app_id} build={http.mcc.build_id} event={http.mcc.event_id}"`, accessLog, corp.SetID))
	loadCaddyfile(t, cfg)

	valid := corp.Case(t, "valid").TLSCertificate()
	r := newClient(t, srv, &valid, "").mustGet(t, "/valid")
	want := fmt.Sprintf("decision=allow reason= set=%s app=%s build=%s event=", corp.SetID, corp.AppID, fusiontest.GoodBuild)
	if r.status != http.StatusOK || r.body != want {
		t.Fatalf("valid: %d %q, want %q", r.status, r.body, want)
	}
	revoked := corp.Case(t, "revoked_serial").TLSCertificate()
	r = newClient(t, srv, &revoked, "").mustGet(t, "/revoked")
	prefix := fmt.Sprintf("decision=allow reason=CERT_REVOKED set=%s app=%s build=%s event=", corp.SetID, corp.AppID, fusiontest.GoodBuild)
	if r.status != http.StatusOK || !strings.HasPrefix(r.body, prefix) || len(r.body) == len(prefix) {
		t.Fatalf("revoked in detection: %d %q, want %q + event id", r.status, r.body, prefix)
	}
	eventID := strings.TrimPrefix(r.body, prefix)
	evs := waitEvents(t, sink, 1)
	if evs[0].ID != eventID {
		t.Errorf("placeholder event id %q, sink event id %q", eventID, evs[0].ID)
	}
	if reqID := r.header.Get("X-Request-Id"); reqID == "" || evs[0].ExternalID != reqID {
		t.Errorf("event externalID %q, request UUID %q: want them equal", evs[0].ExternalID, reqID)
	}

	// The access log lines carry the same values, and the request uuid is
	// the event's externalID.
	entries := waitAccessLog(t, accessLog, 2)
	byPath := map[string]map[string]any{}
	for _, e := range entries {
		req, _ := e["request"].(map[string]any)
		uri, _ := req["uri"].(string)
		byPath[uri] = e
	}
	// A good certificate adds no mcc_* fields of its own (that costs
	// allocations on every request); log_append shows the placeholders.
	v := byPath["/valid"]
	if v == nil || v["decision"] != "allow" || v["app_id"] != corp.AppID || v["build_id"] != fusiontest.GoodBuild {
		t.Errorf("access log for /valid: %v", v)
	}
	for _, k := range []string{"mcc_decision", "mcc_reason", "mcc_fusion_set", "mcc_app_id", "mcc_build_id", "mcc_event_id"} {
		if _, ok := v[k]; ok {
			t.Errorf("access log for /valid has %s: %v", k, v)
		}
	}
	rv := byPath["/revoked"]
	if rv == nil || rv["mcc_decision"] != "allow" || rv["mcc_reason"] != "CERT_REVOKED" || rv["mcc_fusion_set"] != corp.SetID ||
		rv["mcc_app_id"] != corp.AppID || rv["mcc_build_id"] != fusiontest.GoodBuild || rv["mcc_event_id"] != eventID ||
		rv["decision"] != "allow" || rv["app_id"] != corp.AppID {
		t.Errorf("access log for /revoked: %v", rv)
	}
	if rv != nil && rv["uuid"] != evs[0].ExternalID {
		t.Errorf("access log uuid %v, event externalID %q", rv["uuid"], evs[0].ExternalID)
	}
}

func waitAccessLog(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(loadTimeout)
	for {
		var out []map[string]any
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var m map[string]any
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					out = append(out, m)
				}
			}
			f.Close()
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log has %d entries, want %d", len(out), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJSONConfig: the app and the handler work from a JSON config too, with
// an inline fusion set.
func TestJSONConfig(t *testing.T) {
	resetCaddy(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := fmt.Sprintf(`{
	"admin": {"listen": "localhost:%d"},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {
		"mcc": {
			"fusion_sets": [{
				"id": "json-set",
				"trusted_ca": {"file": %q},
				"app_id": "com.example.json",
				"mode": "defense",
				"threat_events": true,
				"message": "JSON set says no."
			}],
			"sinks": [{"type": "file", "path": %q}]
		},
		"http": {
			"grace_period": 1,
			"servers": {
				"plain": {
					"listen": [":%d"],
					"routes": [{"handle": [
						{"handler": "fusion_set", "fusion_set": "json-set"},
						{"handler": "static_response", "body": "ok"}
					]}]
				}
			}
		}
	}
}`, adminPort, corp.CAFile, sink, testHTTPPort)
	newTester(t).InitServer(cfg, "json")
	if t.Failed() {
		t.FailNow()
	}
	// Plain HTTP: no TLS, so no certificate.
	c := &http.Client{Timeout: loadTimeout}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", testHTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "JSON set says no.") {
		t.Fatalf("%d %q, want 403 with the set's message", resp.StatusCode, body)
	}
	evs := waitEvents(t, sink, 1)
	if evs[0].ReasonCode != threat.ReasonNoClientCert || evs[0].FusionSet != "json-set" || evs[0].SNI != "" {
		t.Fatalf("event %+v", evs[0])
	}
}
