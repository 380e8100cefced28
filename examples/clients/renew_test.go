package clients_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/quickstart"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
)

// shortLifetime is the shortest install lifetime a fusion set may ask for
// (fusion: installs.lifetime). The certificate is valid from a minute
// before issue, so renewal opens 2 minutes after issue and renewAfter is 3
// minutes after: the renewal test waits that long, beside the other tests.
const shortLifetime = "5m"

// startShortLivedServer runs an mcc server in this process that issues
// install certificates of the quickstart's set for shortLifetime, on an
// enrollment listener of its own (the quickstart's server certificate),
// so the clients renew within the test. It trusts the quickstart's demo
// CA, as the quickstart's own server does, so the quickstart's Caddy
// accepts what it issues.
func startShortLivedServer(t *testing.T, gw gateway) string {
	t.Helper()
	ctx := context.Background()
	srv, err := server.Open(ctx, server.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Authorities().Import(ctx, quickstart.SetID, filepath.Join(gw.dir, "ca"), "test"); err != nil {
		t.Fatal(err)
	}
	secret, _, err := srv.Tokens().Create(ctx, "renew-test", []auth.Scope{auth.ScopeAdmin}, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	set := "fusion_sets:\n  - id: " + quickstart.SetID + "\n    app_id: " + quickstart.AppID +
		"\n    mode: defense\n    device_headers:\n      deviceID: X-Device-Id\n    installs:\n      lifetime: " + shortLifetime + "\n"
	req := httptest.NewRequestWithContext(ctx, "PUT", "/v1/fusion-sets/"+quickstart.SetID, strings.NewReader(set))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/yaml")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("publishing the short-lived set: %d %s", rec.Code, rec.Body)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(gw.dir, quickstart.ServerCertFile), filepath.Join(gw.dir, quickstart.ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.EnrollHandler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tls.NewListener(ln, server.EnrollTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	t.Cleanup(func() {
		if err := hs.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("stopping the short-lived server: %v", err)
		}
	})
	// localhost: the name in the quickstart's server certificate.
	return "https://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// renewal is one client's install at the short-lived server, enrolled at
// the start of TestClients and renewed at its end.
type renewal struct {
	c     client
	env   []string
	state string
	// serial is the certificate enrolled; renewAfter when the server said
	// to renew it.
	serial     string
	renewAfter time.Time
}

// enrollShortLived enrolls c at the short-lived server.
func enrollShortLived(t *testing.T, c client, env []string, enrollURL, work string) *renewal {
	t.Helper()
	r := &renewal{c: c, state: filepath.Join(work, c.name+"-short")}
	r.env = append(env[:len(env):len(env)], "MCC_ENROLL_URL="+enrollURL, "MCC_FUSION_SET="+quickstart.SetID, "MCC_STATE_DIR="+r.state)
	code, out, errOut := run(t, c, r.env)
	if code != 0 || !strings.Contains(out, "enrolled: install ") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("%s: enrolling at the short-lived server: exit %d\n%s%s", c.name, code, out, errOut)
	}
	var kept struct {
		Answer struct {
			Serial     string
			RenewAfter time.Time
		}
	}
	readJSON(t, filepath.Join(r.state, "install.json"), &kept)
	r.serial, r.renewAfter = kept.Answer.Serial, kept.Answer.RenewAfter
	if until := time.Until(r.renewAfter); until < 2*time.Minute || until > 4*time.Minute {
		t.Fatalf("%s: renewAfter %s is %s away; a %s certificate renews after 3 minutes", c.name, r.renewAfter, until, shortLifetime)
	}
	// A copy of the install made now (a backup restored on another
	// device, or an attacker's dump of the app's storage).
	if out, err := exec.Command("cp", "-a", r.state, r.state+"-copy").CombinedOutput(); err != nil {
		t.Fatalf("copying the install state: %v %s", err, out)
	}
	return r
}

// testRenewal: once renewAfter has passed, the client renews with a new
// key, calls the API with the new certificate, and keeps it on the next
// start; the copy made before the renewal then renews with a key of its
// own, the server revokes the install as cloned, and the copy enrolls
// anew with the bundle.
func testRenewal(t *testing.T, r *renewal) {
	t.Helper()
	if wait := time.Until(r.renewAfter); wait > 0 {
		time.Sleep(wait + time.Second)
	}
	code, out, errOut := run(t, r.c, r.env)
	if code != 0 || !strings.Contains(out, "renewed: serial ") || strings.Contains(out, "renewed: serial "+r.serial+",") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("renewing: exit %d, want a new serial and the call allowed\n%s%s", code, out, errOut)
	}
	var kept struct {
		Key        string
		PendingKey string
		Answer     struct{ Serial string }
	}
	readJSON(t, filepath.Join(r.state, "install.json"), &kept)
	if kept.Answer.Serial == r.serial || kept.PendingKey != "" {
		t.Fatalf("after the renewal the state holds serial %s (enrolled %s) and pending key %q; want the new serial and no pending key", kept.Answer.Serial, r.serial, kept.PendingKey)
	}
	code, out, errOut = run(t, r.c, r.env)
	if code != 0 || strings.Contains(out, "renew") || strings.Contains(out, "enrolled") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("the start after the renewal: exit %d, want the renewed certificate kept\n%s%s", code, out, errOut)
	}

	copyEnv := append(r.env[:len(r.env):len(r.env)], "MCC_STATE_DIR="+r.state+"-copy")
	code, out, errOut = run(t, r.c, copyEnv)
	if code != 0 || !strings.Contains(out, "renewal refused (HTTP 409)") || !strings.Contains(out, "enrolling again") ||
		!strings.Contains(out, "enrolled: install ") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("the copy renewing on its own: exit %d, want 409, a new enrollment and the call allowed\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(r.state+"-copy", "install.json")); err != nil {
		t.Fatal(err)
	}
}
