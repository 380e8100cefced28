package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
)

// newCADir runs `mcc ca init` in a temp dir.
func newCADir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if code, _, stderr := runCLI(t, "ca", "init", "--dir", dir); code != 0 {
		t.Fatalf("ca init: %s", stderr)
	}
	return dir
}

// writeSetFile writes a fusion set file trusting the CA in caDir.
func writeSetFile(t *testing.T, caDir string) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(caDir), "fusion-sets.yaml")
	yml := `fusion_sets:
  - id: bank-prod
    trusted_ca:
      file: ` + filepath.Base(caDir) + `/ca.pem
    app_id: com.example.bank
    mode: defense
    threat_events: true
    message: "Please update the app."
    max_lifetime: 400d
    revocation:
      files: [` + filepath.Base(caDir) + `/revoked.txt]
      crls: [` + filepath.Base(caDir) + `/crl.pem]
    builds:
      blocked: [build-bad]
    fail_safe:
      threshold: 100
      window: 10m
      duration: 15m
    device_headers:
      deviceID: X-Device-Id
`
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func issueArgs(caDir, out string, extra ...string) []string {
	return append([]string{"issue", "--ca", caDir, "--fusion-set", "bank-prod", "--app-id", "com.example.bank",
		"--build", "build-4711", "--build-date", "2026-11-02T10:30:00Z", "--build-user", "ci", "--build-host", "runner-1",
		"--sdk-version", "ios-18", "--out", out}, extra...)
}

func TestIssueWithFusionSetFile(t *testing.T) {
	caDir := newCADir(t)
	setFile := writeSetFile(t, caDir)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "bank.p12")
	legacy := filepath.Join(outDir, "bank-legacy.p12")
	code, stdout, stderr := runCLI(t, issueArgs(caDir, out, "--legacy-out", legacy, "--fusion-set-file", setFile, "--valid-for", "90d")...)
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, stderr)
	}
	for _, p := range []string{out, pki.PasswordPath(out), legacy, pki.PasswordPath(legacy)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o", p, fi.Mode().Perm())
		}
		if !strings.Contains(stdout, p+"  [PRIVATE 0600]") {
			t.Errorf("output does not list %s as private:\n%s", p, stdout)
		}
	}
	for _, p := range []string{pki.PasswordPath(out), pki.PasswordPath(legacy)} {
		pw, _ := pki.ReadPasswordFile(p)
		if len(pw) < 32 || strings.Contains(stdout+stderr, pw) {
			t.Errorf("password (len %d) is short or was printed", len(pw))
		}
	}
	if !strings.Contains(stdout, "mcc://bank-prod/com.example.bank") || !strings.Contains(stdout, "3DES") {
		t.Errorf("output:\n%s", stdout)
	}

	recPath := pki.RecordPathFor(out)
	data, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var rec pki.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	p := rec.Protections
	if p == nil {
		t.Fatal("record has no protections")
	}
	if p.Mode != "defense" || !p.ThreatEvents || p.IdentityURI != "mcc://bank-prod/com.example.bank" ||
		len(p.TrustedCA) != 1 || p.MaxLifetime != "9600h0m0s" || len(p.Builds.Blocked) != 1 ||
		p.FailSafe == nil || p.FailSafe.Threshold != 100 || len(p.Revocation.CRLs) != 1 || len(p.Revocation.Files) != 1 ||
		!p.CryptoFloor.RequireClientAuthEKU || p.SourceSHA256 == "" || len(p.DeviceContext) != 1 {
		t.Errorf("protections: %+v", p)
	}
	if rec.Build.ID != "build-4711" || rec.Build.User != "ci" || rec.Build.Host != "runner-1" || rec.Build.SDKVersion != "ios-18" ||
		rec.LegacyBundle == nil || rec.Bundle.Cipher != "AES-256-CBC" {
		t.Errorf("record: %+v", rec)
	}
	key, leaf, _, err := pki.DecodeBundle(pkiReadFile(t, out), pkiBundlePassword(t, out))
	if err != nil || key == nil {
		t.Fatal(err)
	}
	if bi, ok, _ := certid.ParseBuildInfo(leaf); !ok || bi.ID != "build-4711" || bi.SDK != "ios-18" {
		t.Errorf("build info %+v", bi)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore).Hours(); d < 90*24 || d > 90*24+1 {
		t.Errorf("validity %vh", d)
	}
	// The audit log has the issuance.
	if code, stdout, _ := runCLI(t, "ca", "audit", "verify", "--dir", caDir); code != 0 || !strings.Contains(stdout, "2 entries") {
		t.Errorf("audit: %d %s", code, stdout)
	}
	// Issuing to the same paths again is refused.
	code, _, stderr = runCLI(t, issueArgs(caDir, out)...)
	wantOneLineError(t, code, stderr, 1, "refusing to overwrite")
}

func TestIssueRefusedByFusionSet(t *testing.T) {
	caDir := newCADir(t)
	setFile := writeSetFile(t, caDir)
	out := filepath.Join(t.TempDir(), "bank.p12")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--build", "build-bad"}, "BUILD_BLOCKED"},
		{[]string{"--valid-for", "500d"}, "CERT_"},
		{[]string{"--app-id", "com.example.other"}, `expects app_id "com.example.bank"`},
		{[]string{"--fusion-set", "nope"}, `fusion set "nope" is not in`},
	} {
		args := append(issueArgs(caDir, out, "--fusion-set-file", setFile), tc.args...)
		code, _, stderr := runCLI(t, args...)
		wantOneLineError(t, code, stderr, 1, tc.want)
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: bundle written although the set rejects it", tc.args)
		}
	}
	// A certificate from another CA is rejected too.
	otherCA := newCADir(t)
	code, _, stderr := runCLI(t, issueArgs(otherCA, out, "--fusion-set-file", setFile)...)
	wantOneLineError(t, code, stderr, 1, "would reject")
}

func TestIssueBadInput(t *testing.T) {
	caDir := newCADir(t)
	out := filepath.Join(t.TempDir(), "x.p12")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"issue"}, 2, "--ca is required"},
		{[]string{"issue", "--ca", caDir, "--fusion-set", "s", "--app-id", "a", "--build", "b"}, 2, "--out is required"},
		{[]string{"issue", "--ca", caDir, "--fusion-set", "s", "--app-id", "a", "--out", out}, 2, "--build is required"},
		{issueArgs(caDir, out, "--valid-for", "1y"), 2, "--valid-for"},
		{issueArgs(caDir, out, "--build-date", "yesterday"), 2, "--build-date"},
		{issueArgs(filepath.Join(caDir, "missing"), out), 1, "loading CA"},
		{issueArgs(caDir, out, "--fusion-set", "Bad Set"), 2, "fusion set id"},
		{issueArgs(caDir, out, "--valid-for", "10000d"), 1, "after the CA expires"},
		{issueArgs(caDir, out, "--fusion-set-file", filepath.Join(caDir, "nope.yaml")), 1, "loading fusion set file"},
		{issueArgs(caDir, out, "--profile", "windows"), 2, "--profile: unknown bundle profile"},
		{issueArgs(caDir, out, "--profile", "ios", "--legacy-out", out+".legacy"), 2, "--legacy-out writes a bare 3DES bundle"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			wantOneLineError(t, code, stderr, tc.code, tc.want)
		})
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed issue left a bundle")
	}
}

func pkiReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pkiBundlePassword(t *testing.T, bundle string) string {
	t.Helper()
	pw, err := pki.ReadPasswordFile(pki.PasswordPath(bundle))
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// TestIssueIDsMatchFusionRules: `mcc issue` accepts exactly the set ids and
// app ids a fusion set file accepts. Before, it issued "bank.prod", which
// no fusion file can name, so the certificate could never be used.
func TestIssueIDsMatchFusionRules(t *testing.T) {
	caDir := newCADir(t)
	dir := filepath.Dir(caDir)
	for i, tc := range []struct {
		set, app string
		ok       bool
	}{
		{"bank-prod", "com.example.bank", true},
		{"b", "a", true},
		{"bank.prod", "com.example.bank", false},
		{"Bank-prod", "com.example.bank", false},
		{"-bank", "com.example.bank", false},
		{"bank-", "com.example.bank", false},
		{strings.Repeat("a", 64), "com.example.bank", false},
		{"bank_prod", "com.example.bank", false},
		{"bank-prod", ".hidden", false},
		{"bank-prod", "-app", false},
		{"bank-prod", "Com.Example_Bank-2", true},
		{"bank-prod", "com/example", false},
	} {
		t.Run(tc.set+"/"+tc.app, func(t *testing.T) {
			setFile := filepath.Join(dir, fmt.Sprintf("ids-%d.yaml", i))
			yml := "fusion_sets:\n  - id: \"" + tc.set + "\"\n    app_id: \"" + tc.app + "\"\n    mode: defense\n    trusted_ca:\n      file: " +
				filepath.Join(caDir, "ca.pem") + "\n"
			if err := os.WriteFile(setFile, []byte(yml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, ferr := fusion.LoadFile(setFile)
			out := filepath.Join(t.TempDir(), "app.p12")
			code, _, stderr := runCLI(t, "issue", "--ca", caDir, "--fusion-set", tc.set, "--app-id", tc.app, "--build", "b1", "--out", out)
			if (ferr == nil) != tc.ok {
				t.Errorf("fusion file: err = %v, want ok=%v", ferr, tc.ok)
			}
			if (code == 0) != tc.ok {
				t.Errorf("mcc issue: exit %d (%s), want ok=%v", code, stderr, tc.ok)
			}
			if !tc.ok {
				wantOneLineError(t, code, stderr, 2, "invalid")
			}
		})
	}
}

// TestIssueProfileIOS: --profile ios writes the 3DES bundle in an AES-256
// envelope, the record names it, and `mcc certify verify` opens it.
func TestIssueProfileIOS(t *testing.T) {
	caDir := newCADir(t)
	out := filepath.Join(t.TempDir(), "app.p12e")
	code, stdout, stderr := runCLI(t, issueArgs(caDir, out, "--profile", "ios")...)
	if code != 0 || !strings.Contains(stdout, "AES-256-GCM envelope") {
		t.Fatalf("issue --profile ios: exit %d\n%s%s", code, stdout, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.IsEnvelope(data) {
		t.Fatalf("%s is not an envelope: %q", out, data[:8])
	}
	code, stdout, stderr = runCLI(t, "certify", "verify", pki.RecordPathFor(out), "--ca", caDir, "--bundle", out, "--password-file", pki.PasswordPath(out))
	if code != 0 {
		t.Fatalf("certify verify of the enveloped bundle: exit %d\n%s%s", code, stdout, stderr)
	}
}
