package caddymod

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/threat"
)

// TestReloadKeepsScoresAndBans: a config reload swaps the fusion sets but
// keeps the running scores and bans; a bad Caddyfile or fusion set file is
// refused with a clear error and the running config keeps serving.
func TestReloadKeepsScoresAndBans(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	accept := "Accept: application/json"
	valid := corp.Case(t, "valid").TLSCertificate()

	setA := failSafeSetFile(t, corp, "a.yaml", threat.ModeDefense, "Message A.")
	loadCaddyfile(t, failSafeConfig(srv, setA, sink, corp.SetID, up.addr()))
	clk := testclock.New(time.Now())
	runningState(t).store.clock.set(clk.Now)

	// 20 of 30 points before the reload.
	for i := 0; i < 2; i++ {
		r := newClient(t, srv, nil, otherIP).mustGet(t, "/", accept)
		if !strings.Contains(r.body, "Message A.") {
			t.Fatalf("before reload: %d %q", r.status, r.body)
		}
	}

	setB := failSafeSetFile(t, corp, "b.yaml", threat.ModeDefense, "Message B.")
	loadCaddyfile(t, failSafeConfig(srv, setB, sink, corp.SetID, up.addr()))
	settleAfterReload(t, srv, &valid)
	if runningState(t).store.clock.Now() != clk.Now() {
		t.Fatal("the reload replaced the pooled store (its clock hook is gone)")
	}
	// The new sets are in force ...
	r := newClient(t, srv, nil, otherIP).mustGet(t, "/", accept)
	if !strings.Contains(r.body, "Message B.") {
		t.Fatalf("after reload the new fusion set should answer: %d %q", r.status, r.body)
	}
	// ... and that third failure crossed the threshold with the 20 points
	// scored before the reload.
	r = newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept)
	if blockReason(r) != string(threat.ReasonFailSafeActive) {
		t.Fatalf("score was not kept across the reload: valid certificate got %d %q, want FAIL_SAFE_ACTIVE", r.status, r.body)
	}

	// Another reload: the ban survives it.
	loadCaddyfile(t, failSafeConfig(srv, setA, sink, corp.SetID, up.addr()))
	r = newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept)
	if blockReason(r) != string(threat.ReasonFailSafeActive) {
		t.Fatalf("ban was not kept across the reload: %d %q", r.status, r.body)
	}
	if r := newClient(t, srv, &valid, directIP).mustGet(t, "/", accept); r.status != http.StatusOK {
		t.Fatalf("other client after reload: %d %q", r.status, r.body)
	}
	if got := scrapeMetrics(t)["caddy_mcc_fail_safe_bans_total"]; got != 1 {
		t.Errorf("caddy_mcc_fail_safe_bans_total = %v after reloads, want 1 (counters survive reloads)", got)
	}

	// A bad fusion set file: refused with the loader's file:line: field message.
	bad := filepath.Join(corp.Dir, "bad.yaml")
	writeFile(t, bad, []byte("fusion_sets:\n  - id: bank-prod\n    trusted_ca:\n      file: ca.pem\n    app_id: com.example.bank\n    mode: offense\n    threat_events: true\n"), 0o644)
	status, body := postLoad(t, failSafeConfig(srv, bad, sink, corp.SetID, up.addr()), "text/caddyfile")
	if status == http.StatusOK || !strings.Contains(body, bad+":6:") || !strings.Contains(body, "mode") {
		t.Fatalf("bad fusion set file: POST /load = %d %q, want an error naming %s:6 and the mode field", status, body, bad)
	}

	// A bad Caddyfile: refused too.
	badCaddyfile := strings.Replace(failSafeConfig(srv, setA, sink, corp.SetID, up.addr()), "\t\tsink file", "\t\tbogus_option 1\n\t\tsink file", 1)
	status, body = postLoad(t, badCaddyfile, "text/caddyfile")
	if status == http.StatusOK || !strings.Contains(body, "unrecognized mcc option") || !strings.Contains(body, "bogus_option") {
		t.Fatalf("bad Caddyfile: POST /load = %d %q", status, body)
	}
	// An inline set with a mistake: refused with its Caddyfile line.
	inline := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_set broken {
			trusted_ca %s
			app_id demo
			mode detection
			threat_events off
		}
	}
}
`, corp.CAFile) + site(srv, "\t\t\tmode request", "\tfusion_set broken\n\trespond ok")
	status, body = postLoad(t, inline, "text/caddyfile")
	if status == http.StatusOK || !strings.Contains(body, "Caddyfile:") || !strings.Contains(body, "fusion_set") {
		t.Fatalf("bad inline fusion set: POST /load = %d %q, want a Caddyfile line", status, body)
	}
	// A handler naming an unknown set: refused.
	status, body = postLoad(t, strings.Replace(failSafeConfig(srv, setA, sink, corp.SetID, up.addr()), "\tfusion_set "+corp.SetID+"\n", "\tfusion_set nosuchset\n", 1), "text/caddyfile")
	if status == http.StatusOK || !strings.Contains(body, "nosuchset") {
		t.Fatalf("unknown set: POST /load = %d %q", status, body)
	}
	// A store that is neither memory nor Redis: refused.
	status, body = postLoad(t, strings.Replace(failSafeConfig(srv, setA, sink, corp.SetID, up.addr()), "\t\tsink file", "\t\tstore redis redis://user:secret@127.0.0.1:1/x/y\n\t\tsink file", 1), "text/caddyfile")
	if status == http.StatusOK || strings.Contains(body, "secret") {
		t.Fatalf("bad redis URL: POST /load = %d %q, want an error without the password", status, body)
	}
	// The running config still serves, unchanged: message A, ban in force.
	if r := newClient(t, srv, nil, directIP).mustGet(t, "/", accept); !strings.Contains(r.body, "Message A.") {
		t.Fatalf("after refused loads: %d %q, want the running config's Message A", r.status, r.body)
	}
	r = newClient(t, srv, &valid, otherIP).mustGet(t, "/", accept)
	if blockReason(r) != string(threat.ReasonFailSafeActive) {
		t.Fatalf("after refused loads the ban is gone: %d %q", r.status, r.body)
	}
}

// TestLoadErrorMissingFusionSetFile uses caddytest's own load error
// assertion (its default admin port is this package's) for a fusion set file
// that does not exist.
func TestLoadErrorMissingFusionSetFile(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cfg := globalOptions() + fmt.Sprintf("\tmcc {\n\t\tfusion_sets %s\n\t}\n}\n", missing) +
		site(srv, "\t\t\tmode request", "\tfusion_set x\n\trespond ok")
	if caddytest.Default.AdminPort != adminPort {
		t.Fatalf("caddytest.AssertLoadError talks to port %d, this package's Caddy is on %d", caddytest.Default.AdminPort, adminPort)
	}
	caddytest.AssertLoadError(t, cfg, "caddyfile", "provision mcc: mcc: loading fusion sets: ")
	assertLoadError(t, cfg, missing)
	assertLoadError(t, cfg, "not found")
}

// assertLoadError POSTs a config that must be refused with want in the error.
func assertLoadError(t *testing.T, cfg, want string) {
	t.Helper()
	status, body := postLoad(t, cfg, "text/caddyfile")
	if status == http.StatusOK || !strings.Contains(body, want) {
		t.Fatalf("POST /load = %d %q, want an error containing %q", status, body, want)
	}
}

// TestWatchAppliesFileChanges: a change to a revocation list takes effect
// without a reload; a broken fusion set file written later is ignored and
// the last good configuration keeps serving.
func TestWatchAppliesFileChanges(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := corp.WriteSetFile(t, "watched.yaml", func(sc *fusion.SetConfig) { sc.Message = "Watched." })
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
		watch_interval 50ms
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)
	accept := "Accept: application/json"

	fresh := corp.Issue(t, nil, nil)
	cert := fresh.TLSCertificate()
	if r := newClient(t, srv, &cert, "").mustGet(t, "/", accept); r.status != http.StatusOK {
		t.Fatalf("fresh certificate: %d %q", r.status, r.body)
	}

	// Revoke it by appending its serial to the revocation file.
	f, err := os.OpenFile(corp.RevocationFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(f, "%s\n", fresh.Leaf().SerialNumber.Text(16)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation to take effect", func() bool {
		r := newClient(t, srv, &cert, "").mustGet(t, "/", accept)
		return blockReason(r) == string(threat.ReasonCertRevoked)
	})

	// A broken fusion set file: ignored, the last good config serves.
	st := runningState(t)
	failures := st.reloadFailures.Load()
	writeFile(t, setFile, []byte("fusion_sets:\n  - id: bank-prod\n    mode: [\n"), 0o644)
	waitFor(t, "the watcher to refuse the broken file", func() bool { return st.reloadFailures.Load() > failures })
	r := newClient(t, srv, nil, "").mustGet(t, "/", accept)
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "Watched.") {
		t.Fatalf("after a broken file: %d %q, want the last good config", r.status, r.body)
	}
	valid := corp.Case(t, "valid").TLSCertificate()
	if r := newClient(t, srv, &valid, "").mustGet(t, "/", accept); r.status != http.StatusOK {
		t.Fatalf("valid certificate after a broken file: %d %q", r.status, r.body)
	}

	// Fixed again with a new message: picked up.
	corp.WriteSetFile(t, "watched.yaml", func(sc *fusion.SetConfig) { sc.Message = "Watched again." })
	waitFor(t, "the fixed file to be loaded", func() bool {
		r := newClient(t, srv, nil, "").mustGet(t, "/", accept)
		return strings.Contains(r.body, "Watched again.")
	})
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(loadTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWatchInlineSet: the files an inline fusion set references are watched
// too (Engine.Watch alone would only reload a fusion set file).
func TestWatchInlineSet(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	revocations := filepath.Join(t.TempDir(), "revoked.txt")
	writeFile(t, revocations, []byte("# nothing revoked yet\n"), 0o644)
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_set %s {
			trusted_ca %s
			app_id %s
			revocation_file %s
			mode defense
			threat_events off
			message Inline says no.
		}
		watch_interval 50ms
	}
}
`, corp.SetID, corp.CAFile, corp.AppID, revocations) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\trespond ok", corp.SetID))
	loadCaddyfile(t, cfg)

	cert := corp.Case(t, "valid").TLSCertificate()
	if r := newClient(t, srv, &cert, "").mustGet(t, "/"); r.status != http.StatusOK || r.body != "ok" {
		t.Fatalf("valid certificate: %d %q", r.status, r.body)
	}
	writeFile(t, revocations, []byte(corp.Case(t, "valid").Leaf().SerialNumber.Text(16)+"\n"), 0o644)
	waitFor(t, "the inline set's revocation to take effect", func() bool {
		r := newClient(t, srv, &cert, "").mustGet(t, "/", "Accept: application/json")
		return blockReason(r) == string(threat.ReasonCertRevoked) && strings.Contains(r.body, "Inline says no.")
	})
}

// settleAfterReload waits until connections reach the new server: during a
// reload the old server shares the listener and, shutting down with no grace
// period, may accept a connection and close it (EOF). Good requests from an
// address the test does not score are used, so no score changes.
func settleAfterReload(t *testing.T, srv serverTLS, good *tls.Certificate) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ok := 0; ok < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the reloaded server did not answer within 10s")
		}
		if r, err := newClient(t, srv, good, "127.0.0.9").get(t, "/"); err == nil && r.status == http.StatusOK {
			ok++
			continue
		}
		ok = 0
		time.Sleep(20 * time.Millisecond)
	}
}
