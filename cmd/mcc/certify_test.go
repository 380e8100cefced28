package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
)

func leafBuild() certid.BuildInfo {
	return certid.BuildInfo{ID: "b1", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestCertifyVerify(t *testing.T) {
	caDir := newCADir(t)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "app.p12")
	legacy := filepath.Join(outDir, "app-legacy.p12")
	if code, _, stderr := runCLI(t, issueArgs(caDir, out, "--legacy-out", legacy)...); code != 0 {
		t.Fatal(stderr)
	}
	rec := pki.RecordPathFor(out)

	code, stdout, stderr := runCLI(t, "certify", "verify", rec, "--ca", caDir, "--bundle", out, "--password-file", pki.PasswordPath(out))
	if code != 0 || !strings.Contains(stdout, "OK "+rec) || !strings.Contains(stdout, "OK "+out) {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	// Flags before the record, the CA as a file, the legacy bundle with its default password file.
	code, _, stderr = runCLI(t, "certify", "verify", "--ca", filepath.Join(caDir, pki.CACertFile), "--bundle", legacy, rec)
	if code != 0 {
		t.Fatalf("verify legacy: exit %d %s", code, stderr)
	}

	recData := pkiReadFile(t, rec)
	bundleData := pkiReadFile(t, out)
	tamper := func(t *testing.T, path string, orig []byte, edit func([]byte) []byte) {
		t.Helper()
		os.WriteFile(path, edit(append([]byte(nil), orig...)), 0o600)
		t.Cleanup(func() { os.WriteFile(path, orig, 0o600) })
	}
	for _, tc := range []struct {
		name string
		path string
		orig []byte
		edit func([]byte) []byte
		want string
	}{
		{"build id", rec, recData, func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"id": "build-4711"`, `"id": "build-4712"`, 1))
		}, "signature check failed"},
		{"not after", rec, recData, func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"notAfter": "20`, `"notAfter": "21`, 1))
		}, "signature check failed"},
		{"bundle byte", out, bundleData, func(b []byte) []byte { b[len(b)/3] ^= 0x80; return b }, "bundle-sha256 check failed"},
		{"not json", rec, recData, func(b []byte) []byte { return b[:len(b)/2] }, "record check failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tamper(t, tc.path, tc.orig, tc.edit)
			code, _, stderr := runCLI(t, "certify", "verify", rec, "--ca", caDir, "--bundle", out)
			wantOneLineError(t, code, stderr, 1, tc.want)
		})
	}
	t.Run("other CA", func(t *testing.T) {
		code, _, stderr := runCLI(t, "certify", "verify", rec, "--ca", newCADir(t))
		wantOneLineError(t, code, stderr, 1, "ca check failed")
	})
	t.Run("wrong password", func(t *testing.T) {
		code, _, stderr := runCLI(t, "certify", "verify", rec, "--ca", caDir, "--bundle", out, "--password-file", pki.PasswordPath(legacy))
		wantOneLineError(t, code, stderr, 1, "bundle-decode check failed")
	})
}

func TestCertifyBadInput(t *testing.T) {
	caDir := newCADir(t)
	rec := filepath.Join(t.TempDir(), "r.json")
	os.WriteFile(rec, []byte("{}"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"certify"}, 2, ""},
		{[]string{"certify", "verify", "--ca", caDir}, 2, "want exactly one RECORD"},
		{[]string{"certify", "verify", rec, rec, "--ca", caDir}, 2, "want exactly one RECORD"},
		{[]string{"certify", "verify", rec}, 2, "--ca is required"},
		{[]string{"certify", "verify", rec, "--ca", caDir, "--password-file", rec}, 2, "--password-file needs --bundle"},
		{[]string{"certify", "verify", rec, "--ca", filepath.Join(caDir, "nope")}, 1, "--ca"},
		{[]string{"certify", "verify", filepath.Join(caDir, "nope.json"), "--ca", caDir}, 1, "reading record"},
		{[]string{"certify", "verify", rec, "--ca", caDir}, 1, "record check failed: schema"},
		{[]string{"certify", "verify", rec, "--ca", caDir, "--bundle", rec + ".p12"}, 1, "reading bundle"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if tc.want == "" {
				if code != 2 || !strings.Contains(stderr, "verify") {
					t.Errorf("exit %d, stderr %q", code, stderr)
				}
				return
			}
			wantOneLineError(t, code, stderr, tc.code, tc.want)
		})
	}
}

// TestCertifyVerifyRevoked: a record whose certificate has since been
// revoked fails verification (exit 1, one line naming the revocation),
// unless --allow-revoked, which warns and exits 0. The CA may be given as a
// directory (its crl.pem and revoked.txt) or as ca.pem with --crl.
func TestCertifyVerifyRevoked(t *testing.T) {
	caDir := newCADir(t)
	out := filepath.Join(t.TempDir(), "app.p12")
	if code, _, stderr := runCLI(t, issueArgs(caDir, out)...); code != 0 {
		t.Fatal(stderr)
	}
	rec := pki.RecordPathFor(out)
	code, stdout, stderr := runCLI(t, "certify", "verify", rec, "--ca", caDir)
	if code != 0 || !strings.Contains(stdout, "not revoked (checked ") || stderr != "" {
		t.Fatalf("before revocation: exit %d %q %q", code, stdout, stderr)
	}
	// ca.pem alone: the record still verifies, and the output says that
	// revocation was not checked.
	code, stdout, _ = runCLI(t, "certify", "verify", rec, "--ca", filepath.Join(caDir, pki.CACertFile))
	if code != 0 || !strings.Contains(stdout, "revocation not checked") {
		t.Errorf("ca.pem only: exit %d %q", code, stdout)
	}

	recData := string(pkiReadFile(t, rec))
	i := strings.Index(recData, `"serial": "`)
	serial := recData[i+len(`"serial": "`):]
	serial = serial[:strings.IndexByte(serial, '"')]
	if code, _, stderr := runCLI(t, "revoke", "--ca", caDir, "--serial", serial, "--reason", "keyCompromise"); code != 0 {
		t.Fatal(stderr)
	}

	code, _, stderr = runCLI(t, "certify", "verify", rec, "--ca", caDir)
	wantOneLineError(t, code, stderr, 1, "has been revoked")
	for _, want := range []string{"serial " + serial, "crl.pem", "keyCompromise", "--allow-revoked"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal lacks %q: %q", want, stderr)
		}
	}
	code, _, stderr = runCLI(t, "certify", "verify", rec, "--ca", filepath.Join(caDir, pki.CACertFile), "--crl", filepath.Join(caDir, pki.CRLFile))
	wantOneLineError(t, code, stderr, 1, "has been revoked")
	code, stdout, stderr = runCLI(t, "certify", "verify", rec, "--ca", caDir, "--allow-revoked")
	if code != 0 || !strings.Contains(stdout, "REVOKED") || !strings.HasPrefix(stderr, "warning: ") || !strings.Contains(stderr, "has been revoked") {
		t.Errorf("--allow-revoked: exit %d %q %q", code, stdout, stderr)
	}

	// Listed only in revoked.txt (by fingerprint, as operators may add by
	// hand): also caught.
	caDir2 := newCADir(t)
	out2 := filepath.Join(t.TempDir(), "app.p12")
	if code, _, stderr := runCLI(t, issueArgs(caDir2, out2)...); code != 0 {
		t.Fatal(stderr)
	}
	rec2 := string(pkiReadFile(t, pki.RecordPathFor(out2)))
	j := strings.Index(rec2, `"sha256": "`)
	fp := rec2[j+len(`"sha256": "`):]
	fp = fp[:strings.IndexByte(fp, '"')]
	f, _ := os.OpenFile(filepath.Join(caDir2, pki.RevokedFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("sha256:" + strings.ToUpper(fp) + "\n")
	f.Close()
	code, _, stderr = runCLI(t, "certify", "verify", pki.RecordPathFor(out2), "--ca", caDir2)
	wantOneLineError(t, code, stderr, 1, "revoked.txt")

	// A CA directory holding only ca.pem: verified, revocation not checked.
	onlyCert := filepath.Join(t.TempDir(), "ca")
	os.MkdirAll(onlyCert, 0o700)
	os.WriteFile(filepath.Join(onlyCert, pki.CACertFile), pkiReadFile(t, filepath.Join(caDir, pki.CACertFile)), 0o644)
	code, stdout, _ = runCLI(t, "certify", "verify", rec, "--ca", onlyCert)
	if code != 0 || !strings.Contains(stdout, "revocation not checked") {
		t.Errorf("CA dir without CRL: exit %d %q", code, stdout)
	}
	// A --crl that does not exist is an error, not a pass.
	code, _, stderr = runCLI(t, "certify", "verify", rec, "--ca", caDir, "--crl", filepath.Join(onlyCert, "nope.pem"))
	wantOneLineError(t, code, stderr, 1, "reading CRL")

	// A CRL from another CA is an error, not a pass.
	code, _, stderr = runCLI(t, "certify", "verify", rec, "--ca", caDir, "--crl", filepath.Join(caDir2, pki.CRLFile))
	wantOneLineError(t, code, stderr, 1, "not signed by the CA")
}
