package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/pki"
)

func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	code, stdout, stderr := runCLI(t, "ca", "init", "--dir", dir, "--name", "Bank CA", "--key-type", "ecdsa-p384", "--valid-for", "30d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{`created CA "Bank CA" (ecdsa-p384`, "ca.pem", "ca-key.pem  [PRIVATE 0600]", "revoked.txt", "crl.pem", "CA sha256:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	ca, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cert.Subject.CommonName != "Bank CA" {
		t.Errorf("CN %q", ca.Cert.Subject.CommonName)
	}
	if fi, _ := os.Stat(filepath.Join(dir, pki.CAKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %o", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %o", fi.Mode().Perm())
	}

	code, _, stderr = runCLI(t, "ca", "init", "--dir", dir)
	wantOneLineError(t, code, stderr, 1, "refusing to overwrite")

	code, stdout, stderr = runCLI(t, "ca", "audit", "verify", "--dir", dir)
	if code != 0 || !strings.Contains(stdout, "audit log OK: 1 entries") {
		t.Errorf("audit verify: exit %d %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "ca", "crl", "--dir", dir, "--next-update", "2d")
	if code != 0 || !strings.Contains(stdout, "CRL number 2, 0 revoked") {
		t.Errorf("ca crl: exit %d %q %q", code, stdout, stderr)
	}
}

func TestCAInitBadInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ca", "init"}, 2, "--dir is required"},
		{[]string{"ca", "init", "--dir", dir, "--valid-for", "ten years"}, 2, "--valid-for"},
		{[]string{"ca", "init", "--dir", dir, "--valid-for", "0s"}, 2, "--valid-for must be positive"},
		{[]string{"ca", "init", "--dir", dir, "--key-type", "dsa"}, 2, "unknown key type"},
		{[]string{"ca", "init", "--dir", dir, "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"ca", "audit", "verify"}, 2, "--dir is required"},
		{[]string{"ca", "audit", "verify", "--dir", dir}, 1, "loading CA certificate"},
		{[]string{"ca", "audit"}, 2, "mcc ca audit verify"},
		{[]string{"ca", "crl", "--dir", dir}, 1, "loading CA"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if tc.want == "flag provided but not defined" {
				// flag prints the error and the usage; the first line says it.
				if code != 2 || !strings.HasPrefix(stderr, "flag provided but not defined: -bogus") {
					t.Errorf("exit %d, stderr %q", code, stderr)
				}
				return
			}
			wantOneLineError(t, code, stderr, tc.code, tc.want)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, pki.CACertFile)); err == nil {
		t.Error("a failed init left a CA behind")
	}
}
