package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/pki"
)

func TestRevokeCommand(t *testing.T) {
	caDir := newCADir(t)
	out := filepath.Join(t.TempDir(), "app.p12")
	if code, _, stderr := runCLI(t, issueArgs(caDir, out)...); code != 0 {
		t.Fatal(stderr)
	}
	_, leaf, _, err := pki.DecodeBundle(pkiReadFile(t, out), pkiBundlePassword(t, out))
	if err != nil {
		t.Fatal(err)
	}
	serial := pki.FormatSerial(leaf.SerialNumber)
	// Upper case with colons, as openssl prints serials.
	var colon []string
	hexs := strings.ToUpper(leaf.SerialNumber.Text(16))
	if len(hexs)%2 == 1 {
		hexs = "0" + hexs
	}
	for i := 0; i < len(hexs); i += 2 {
		colon = append(colon, hexs[i:i+2])
	}
	code, stdout, stderr := runCLI(t, "revoke", "--ca", caDir, "--serial", strings.Join(colon, ":"), "--reason", "keyCompromise", "--crl-next-update", "3d")
	if code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("unexpected warning for a known serial: %q", stderr)
	}
	if !strings.Contains(stdout, "revoked serial "+serial+" (reason keyCompromise)") || !strings.Contains(stdout, "CRL number 2") {
		t.Errorf("output:\n%s", stdout)
	}
	txt := string(pkiReadFile(t, filepath.Join(caDir, pki.RevokedFile)))
	if !strings.Contains(txt, "\n"+serial+"\n") {
		t.Errorf("revoked.txt:\n%s", txt)
	}
	crl := loadCRL(t, caDir)
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("CRL entries %+v", crl.RevokedCertificateEntries)
	}

	// An unknown serial (a typo?) is refused: exit 1, one line, the CRL
	// and revoked.txt unchanged.
	crlBefore := pkiReadFile(t, filepath.Join(caDir, pki.CRLFile))
	txtBefore := pkiReadFile(t, filepath.Join(caDir, pki.RevokedFile))
	code, _, stderr = runCLI(t, "revoke", "--ca", caDir, "--serial", "0xDEADBEEF")
	wantOneLineError(t, code, stderr, 1, "serial deadbeef is not in this CA's audit log")
	if !strings.Contains(stderr, "--force") {
		t.Errorf("refusal does not name --force: %q", stderr)
	}
	if string(pkiReadFile(t, filepath.Join(caDir, pki.CRLFile))) != string(crlBefore) ||
		string(pkiReadFile(t, filepath.Join(caDir, pki.RevokedFile))) != string(txtBefore) {
		t.Error("a refused revocation changed crl.pem or revoked.txt")
	}
	// With --force: revoked with a warning; the CRL number grows.
	code, _, stderr = runCLI(t, "revoke", "--ca", caDir, "--serial", "0xDEADBEEF", "--force")
	if code != 0 || !strings.Contains(stderr, "warning: serial deadbeef is not in this CA's audit log") {
		t.Errorf("unknown serial: exit %d, stderr %q", code, stderr)
	}
	if n := loadCRL(t, caDir).Number.Int64(); n != 3 {
		t.Errorf("CRL number %d, want 3", n)
	}

	// --cert of a certificate from another CA: warned, revoked.
	other := filepath.Join(t.TempDir(), "other.pem")
	otherCA := newCADir(t)
	ca2, _ := pki.LoadCA(otherCA)
	iss, err := ca2.Issue(pki.IssueRequest{FusionSet: "s", AppID: "a", Build: leafBuild()})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.Cert.Raw}), 0o600)
	code, _, stderr = runCLI(t, "revoke", "--ca", caDir, "--cert", other)
	wantOneLineError(t, code, stderr, 1, "was not issued by this CA")
	code, _, stderr = runCLI(t, "revoke", "--ca", caDir, "--cert", other, "--force")
	if code != 0 || !strings.Contains(stderr, "was not issued by this CA") {
		t.Errorf("--cert other CA: exit %d, %q", code, stderr)
	}
	if code, stdout, stderr := runCLI(t, "ca", "audit", "verify", "--dir", caDir); code != 0 || !strings.Contains(stdout, "5 entries") {
		t.Errorf("audit verify: %d %q %q", code, stdout, stderr)
	}

	// Tampering with the audit log is caught.
	logPath := filepath.Join(caDir, pki.AuditFile)
	data := pkiReadFile(t, logPath)
	os.WriteFile(logPath, []byte(strings.Replace(string(data), `"reason":"keyCompromise"`, `"reason":"superseded"`, 1)), 0o600)
	code, _, stderr = runCLI(t, "ca", "audit", "verify", "--dir", caDir)
	wantOneLineError(t, code, stderr, 1, "line 3: entry was edited")
}

func loadCRL(t *testing.T, caDir string) *x509.RevocationList {
	t.Helper()
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.LoadCRL()
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func TestRevokeBadInput(t *testing.T) {
	caDir := newCADir(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"revoke", "--serial", "ab"}, 2, "--ca is required"},
		{[]string{"revoke", "--ca", caDir}, 2, "exactly one of --serial and --cert"},
		{[]string{"revoke", "--ca", caDir, "--serial", "ab", "--cert", "x.pem"}, 2, "exactly one of --serial and --cert"},
		{[]string{"revoke", "--ca", caDir, "--serial", "xyz"}, 2, "not hexadecimal"},
		{[]string{"revoke", "--ca", caDir, "--serial", "ab", "--reason", "bored"}, 2, "unknown revocation reason"},
		{[]string{"revoke", "--ca", caDir, "--serial", "ab", "--crl-next-update", "soon"}, 2, "--crl-next-update"},
		{[]string{"revoke", "--ca", filepath.Join(caDir, "nope"), "--serial", "ab"}, 1, "loading CA"},
		{[]string{"revoke", "--ca", caDir, "--cert", filepath.Join(caDir, "nope.pem")}, 1, "reading --cert"},
		{[]string{"revoke", "--ca", caDir, "--cert", filepath.Join(caDir, pki.RevokedFile)}, 1, "no CERTIFICATE PEM block"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			wantOneLineError(t, code, stderr, tc.code, tc.want)
		})
	}
}
