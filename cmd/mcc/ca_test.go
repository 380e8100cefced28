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
			wantOneLineError(t, code, stderr, tc.code, tc.want)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, pki.CACertFile)); err == nil {
		t.Error("a failed init left a CA behind")
	}
}

// TestAuditLogDeletedIsRefused reproduces issue 9 point 9: with audit.log
// deleted, the next issuance used to start a new log and `ca audit verify`
// said OK. Now every appending command refuses, nothing is written, and
// verify fails; a log swapped for another CA's (or restarted without the
// init entry) fails verify too.
func TestAuditLogDeletedIsRefused(t *testing.T) {
	caDir := newCADir(t)
	outDir := t.TempDir()
	if code, _, stderr := runCLI(t, issueArgs(caDir, filepath.Join(outDir, "one.p12"))...); code != 0 {
		t.Fatal(stderr)
	}
	logPath := filepath.Join(caDir, pki.AuditFile)
	orig := pkiReadFile(t, logPath)
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	crlBefore := pkiReadFile(t, filepath.Join(caDir, pki.CRLFile))

	out := filepath.Join(outDir, "two.p12")
	code, _, stderr := runCLI(t, issueArgs(caDir, out)...)
	wantOneLineError(t, code, stderr, 1, "audit log")
	if !strings.Contains(stderr, "missing") || !strings.Contains(stderr, "refusing to start a new log") {
		t.Errorf("issue: %q", stderr)
	}
	for _, p := range []string{out, pki.PasswordPath(out), pki.RecordPathFor(out), logPath} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s written despite the missing audit log", p)
		}
	}
	code, _, stderr = runCLI(t, "revoke", "--ca", caDir, "--serial", "ab", "--force")
	wantOneLineError(t, code, stderr, 1, "refusing to start a new log")
	if string(pkiReadFile(t, filepath.Join(caDir, pki.CRLFile))) != string(crlBefore) {
		t.Error("revoke changed the CRL despite the missing audit log")
	}
	code, _, stderr = runCLI(t, "cert", "create", "--ca", caDir, "--name", "x", "--dns", "localhost", "--server",
		"--out", filepath.Join(outDir, "c.pem"), "--key-out", filepath.Join(outDir, "k.pem"))
	wantOneLineError(t, code, stderr, 1, "refusing to start a new log")
	code, _, stderr = runCLI(t, "ca", "audit", "verify", "--dir", caDir)
	wantOneLineError(t, code, stderr, 1, "audit log is missing")

	// An empty log is no better.
	os.WriteFile(logPath, nil, 0o600)
	code, _, stderr = runCLI(t, "ca", "audit", "verify", "--dir", caDir)
	wantOneLineError(t, code, stderr, 1, "entry 1 must be the CA's init entry")
	code, _, stderr = runCLI(t, issueArgs(caDir, out)...)
	wantOneLineError(t, code, stderr, 1, "refusing to start a new log")

	// Another CA's complete, valid log in its place: entry 1 names the
	// wrong CA, so verify and every append refuse.
	other := newCADir(t)
	os.WriteFile(logPath, pkiReadFile(t, filepath.Join(other, pki.AuditFile)), 0o600)
	code, _, stderr = runCLI(t, "ca", "audit", "verify", "--dir", caDir)
	wantOneLineError(t, code, stderr, 1, "line 1: ") // signed by the other CA's key
	code, _, stderr = runCLI(t, issueArgs(caDir, out)...)
	wantOneLineError(t, code, stderr, 1, "not the init entry of this CA")

	// Restored from a backup: everything works again.
	os.WriteFile(logPath, orig, 0o600)
	if code, _, stderr := runCLI(t, issueArgs(caDir, out)...); code != 0 {
		t.Fatalf("issue after restoring the log: %s", stderr)
	}
	if code, stdout, stderr := runCLI(t, "ca", "audit", "verify", "--dir", caDir); code != 0 || !strings.Contains(stdout, "3 entries") {
		t.Errorf("audit verify after restore: %d %q %q", code, stdout, stderr)
	}
}

// TestCAInitRefusesLeftoverAuditLog: a new CA never adopts an old log.
func TestCAInitRefusesLeftoverAuditLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, pki.AuditFile), []byte("x\n"), 0o600)
	code, _, stderr := runCLI(t, "ca", "init", "--dir", dir)
	wantOneLineError(t, code, stderr, 1, "already holds an audit log")
	if _, err := os.Stat(filepath.Join(dir, pki.CAKeyFile)); err == nil {
		t.Error("a CA key was written")
	}
}
