package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server"
)

// TestEnrollCLI: `mcc enroll` plays the app against a real server's
// enrollment listener (mTLS): it enrolls with the bundle `mcc issue
// --server` wrote, renews with the install certificate, and after `mcc
// revoke --install` the renewal is refused in one line naming the reason.
func TestEnrollCLI(t *testing.T) {
	// The install certificate (24 h) renews from halfway: the server runs
	// 13 h behind until the renewal, then catches up with the wall clock,
	// so every certificate is valid by both clocks throughout.
	e := startRemoteServerAt(t, -13*time.Hour)
	enroll := httptest.NewUnstartedServer(e.srv.EnrollHandler())
	enroll.TLS = server.EnrollTLS(&tls.Config{})
	enroll.StartTLS()
	t.Cleanup(enroll.Close)
	serverCA := filepath.Join(e.dir, "enroll-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: enroll.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(e.dir, "app.p12")
	if code, so, se := runCLI(t, "issue", "--server", e.url, "--token-file", e.ciToken, "--fusion-set", "bank-prod",
		"--app-id", "com.example.bank", "--build", "b7", "--out", bundle, "--legacy-out", filepath.Join(e.dir, "app-legacy.p12")); code != 0 {
		t.Fatalf("issue: exit %d\n%s%s", code, so, se)
	}
	out := filepath.Join(e.dir, "install")
	at := []string{"--server", enroll.URL, "--server-ca", serverCA, "--fusion-set", "bank-prod", "--out", out}
	code, stdout, stderr := runCLI(t, append([]string{"enroll", "--bundle", bundle, "--password-file", bundle + ".password",
		"--install-id", "cli-install-1", "--device-id", "pixel-1"}, at...)...)
	if code != 0 || !strings.Contains(stdout, "enrolled install cli-install-1") {
		t.Fatalf("enroll: exit %d\n%s%s", code, stdout, stderr)
	}
	if fi, err := os.Stat(filepath.Join(out, installKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("install key: %v %v", fi, err)
	}
	first := readInstall(t, out)
	if info, ok, err := certid.ParseBuildInfo(first); !ok || err != nil || info.Kind != certid.KindInstall || info.InstallID != "cli-install-1" || info.ID != "b7" {
		t.Fatalf("install certificate metadata %+v %v", info, err)
	}

	code, _, stderr = runCLI(t, append([]string{"enroll", "--renew"}, at...)...)
	wantOneLineError(t, code, stderr, 1, "too early")
	e.setSkew(0)
	code, stdout, stderr = runCLI(t, append([]string{"enroll", "--renew"}, at...)...)
	if code != 0 || !strings.Contains(stdout, "renewed install cli-install-1") {
		t.Fatalf("renew: exit %d\n%s%s", code, stdout, stderr)
	}
	if second := readInstall(t, out); second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("the renewal did not replace the install certificate")
	}

	code, stdout, stderr = runCLI(t, "revoke", "--server", e.url, "--token-file", e.revokeToken, "--fusion-set", "bank-prod", "--install", "cli-install-1")
	if code != 0 || strings.Count(stdout, "revoked serial") != 2 {
		t.Fatalf("revoke --install: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, append([]string{"enroll", "--renew", "--new-key"}, at...)...)
	wantOneLineError(t, code, stderr, 1, "CERT_REVOKED")

	// Bad input: one line, exit 2.
	code, _, stderr = runCLI(t, "enroll", "--server", "http://127.0.0.1:1", "--fusion-set", "bank-prod", "--out", out, "--bundle", bundle, "--password-file", bundle+".password")
	wantOneLineError(t, code, stderr, 2, "https://")
	code, _, stderr = runCLI(t, append([]string{"enroll", "--renew", "--bundle", bundle}, at...)...)
	wantOneLineError(t, code, stderr, 2, "--renew presents the install certificate")
	code, _, stderr = runCLI(t, "revoke", "--server", e.url, "--token-file", e.revokeToken, "--install", "x")
	wantOneLineError(t, code, stderr, 2, "--install needs --fusion-set")
}

func readInstall(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, installCertFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCertificatePEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
