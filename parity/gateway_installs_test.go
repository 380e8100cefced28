package parity

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestParityInstallCertificates runs one fusion set that wants install
// certificates (installs.accept [install]) and blocks cloned ones
// (clone_detection.block_installs) through a real Caddy started from a
// Caddyfile and through Check over real gRPC as Envoy calls it, with the
// same certificates from pki.Issue and pki.IssueInstall:
//   - the build certificate (the bundle shipped in the app) is refused with
//     CERT_KIND_REFUSED by both;
//   - the install certificate is accepted by both;
//   - the install certificate replayed from a third address is blocked as
//     RATE_ANOMALY by both, and from then on refused from any address
//     (FAIL_SAFE_ACTIVE: the certificate is banned);
//   - another install certificate of the same build still works.
func TestParityInstallCertificates(t *testing.T) {
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	kca := fusiontest.NewKindCA(t, corpus)
	build := kca.Build(t, fusiontest.GoodBuild)
	install := kca.Install(t, fusiontest.GoodBuild, "parity-install-1", 0)
	other := kca.Install(t, fusiontest.GoodBuild, "parity-install-2", 0)
	srv := newServerTLS(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get(fusion.HeaderReason)+"|"+r.Header.Get(fusion.HeaderEvent))
	}))
	defer up.Close()
	file := corpus.WriteSetFile(t, "parity-installs.yaml", func(sc *fusion.SetConfig) {
		kca.Trust(sc)
		sc.Mode, sc.ThreatEvents = string(threat.ModeDefense), true
		sc.Installs = &fusion.Installs{Accept: []string{"install"}, MaxLifetime: fusion.Duration(7 * 24 * time.Hour)}
		sc.CloneDetection = &fusion.CloneDetection{MaxAddresses: 3, BlockInstalls: true}
		sc.FailSafe = &fusion.FailSafe{Threshold: 1000, Duration: fusion.Duration(time.Hour)}
	})
	sink := filepath.Join(t.TempDir(), "caddy-events.jsonl")
	loadCaddyTrusting(t, srv, file, strings.TrimPrefix(up.URL, "http://"), sink)
	check := startAuthzTrusting(t, file, strings.Join(trustedRanges, ","))

	n := 0
	both := func(what string, tc fusiontest.Case, addr string, wantAction string, want threat.Reason) {
		t.Helper()
		n++
		device := fmt.Sprint("installs-device-", n)
		c := cloneViaCaddy(t, srv, tc, addr, device)
		e := cloneViaEnvoy(t, check, corpus.SetID, tc, addr, device, 200+n)
		if c.action != wantAction || c.reason != want || e.action != wantAction || e.reason != want {
			t.Errorf("%s: Caddy %s %q, Envoy %s %q; want %s %q at both", what, c.action, c.reason, e.action, e.reason, wantAction, want)
		}
	}
	both("build certificate", build, "198.51.100.1", "block", threat.ReasonCertKindRefused)
	both("build certificate again", build, "198.51.100.2", "block", threat.ReasonCertKindRefused)
	both("install certificate", install, "203.0.113.1", "allow", threat.ReasonNone)
	both("install certificate, second address", install, "203.0.113.2", "allow", threat.ReasonNone)
	both("install certificate, third address", install, "203.0.113.3", "block", threat.ReasonRateAnomaly)
	both("cloned install certificate, fresh address", install, "192.0.2.77", "block", threat.ReasonFailSafeActive)
	both("cloned install certificate, first address", install, "203.0.113.1", "block", threat.ReasonFailSafeActive)
	both("another install of the build", other, "203.0.113.1", "allow", threat.ReasonNone)

	// Caddy's sink got the refusals and the block.
	deadline := time.Now().Add(timeout)
	for countReasons(t, sink, threat.ReasonCertKindRefused) != 2 || countReasons(t, sink, threat.ReasonRateAnomaly) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Caddy's sink holds %d CERT_KIND_REFUSED and %d RATE_ANOMALY events, want 2 and 1",
				countReasons(t, sink, threat.ReasonCertKindRefused), countReasons(t, sink, threat.ReasonRateAnomaly))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
