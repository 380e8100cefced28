package caddymod

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// TestRedisStoreKeepsBans: with `store redis <url>` the scores and bans live
// in Redis, so a ban outlives every in-process state: even after the mcc app
// is unloaded entirely and loaded again, the client is still banned.
func TestRedisStoreKeepsBans(t *testing.T) {
	resetCaddy(t)
	rs := redistest.New(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := failSafeSetFile(t, corp, "redis.yaml", threat.ModeDefense, "Blocked.")
	cfg := strings.Replace(failSafeConfig(srv, setFile, sink, corp.SetID, up.addr()),
		"\t\tsink file", fmt.Sprintf("\t\tstore redis %s\n\t\tsink file", rs.URL()), 1)
	loadCaddyfile(t, cfg)

	accept := "Accept: application/json"
	valid := corp.Case(t, "valid").TLSCertificate()
	for i := 0; i < 3; i++ {
		newClient(t, srv, nil, otherIP).mustGet(t, "/", accept)
	}
	if r := newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept); blockReason(r) != string(threat.ReasonFailSafeActive) {
		t.Fatalf("after three failures: %d %q, want FAIL_SAFE_ACTIVE", r.status, r.body)
	}

	resetCaddy(t) // no mcc state left in this process
	loadCaddyfile(t, cfg)
	if r := newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept); blockReason(r) != string(threat.ReasonFailSafeActive) {
		t.Fatalf("the ban did not survive in Redis: %d %q", r.status, r.body)
	}
	if r := newClient(t, srv, &valid, directIP).mustGet(t, "/", accept); r.status != http.StatusOK {
		t.Fatalf("other client: %d %q", r.status, r.body)
	}
	if got := scrapeMetrics(t)["caddy_mcc_store_errors_total"]; got != 0 {
		t.Errorf("caddy_mcc_store_errors_total = %v, want 0", got)
	}
}
