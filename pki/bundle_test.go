package pki

import (
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mccgate/mcc/pki/certid"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// issueToFiles issues into a temp dir with a legacy bundle too.
func issueToFiles(t *testing.T, ca *CA) (string, *IssueFilesResult) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "app.p12")
	res, err := ca.IssueFiles(IssueFilesOptions{Request: testRequest(), Out: out, LegacyOut: filepath.Join(filepath.Dir(out), "app-legacy.p12")})
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

func TestModernBundleOpensWithOpenSSL(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	out, _ := issueToFiles(t, ca)
	info, err := openssl(t, "pkcs12", "-info", "-noout", "-in", out, "-passin", "file:"+PasswordPath(out))
	if err != nil {
		t.Fatalf("openssl pkcs12 -info failed: %v\n%s", err, info)
	}
	for _, want := range []string{"MAC: sha256", "PBES2, PBKDF2, AES-256-CBC", "PRF hmacWithSHA256", "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"} {
		if !strings.Contains(info, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, info)
		}
	}
	// Extract the key and certificate the way curl users would.
	pemOut, err := openssl(t, "pkcs12", "-in", out, "-passin", "file:"+PasswordPath(out), "-nodes")
	if err != nil || !strings.Contains(pemOut, "PRIVATE KEY") || strings.Count(pemOut, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("openssl pkcs12 -nodes: %v\n%s", err, pemOut)
	}
	// A wrong password is refused.
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	if s, err := openssl(t, "pkcs12", "-info", "-noout", "-in", out, "-passin", "file:"+wrong); err == nil {
		t.Errorf("openssl opened the bundle with a wrong password:\n%s", s)
	}
}

func TestLegacyBundleOpensWithOpenSSL(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	out, _ := issueToFiles(t, ca)
	legacy := filepath.Join(filepath.Dir(out), "app-legacy.p12")
	info, err := openssl(t, "pkcs12", "-info", "-noout", "-in", legacy, "-passin", "file:"+PasswordPath(legacy))
	if err != nil {
		t.Fatalf("openssl pkcs12 -info (legacy) failed: %v\n%s", err, info)
	}
	for _, want := range []string{"MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC"} {
		if !strings.Contains(info, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, info)
		}
	}
	if strings.Contains(info, "RC2") {
		t.Errorf("legacy bundle uses RC2:\n%s", info)
	}
}

func TestBundleDecodesInGo(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	out, res := issueToFiles(t, ca)
	for _, path := range []string{out, filepath.Join(filepath.Dir(out), "app-legacy.p12")} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pw, err := ReadPasswordFile(PasswordPath(path))
		if err != nil {
			t.Fatal(err)
		}
		key, leaf, chain, err := pkcs12.DecodeChain(data, pw)
		if err != nil {
			t.Fatalf("%s: DecodeChain: %v", filepath.Base(path), err)
		}
		ek, ok := key.(*ecdsa.PrivateKey)
		if !ok || !ek.PublicKey.Equal(leaf.PublicKey) {
			t.Errorf("%s: key does not match the leaf", filepath.Base(path))
		}
		if !leaf.Equal(res.Issued.Cert) {
			t.Errorf("%s: leaf is not the issued certificate", filepath.Base(path))
		}
		if len(chain) != 1 || !chain[0].Equal(ca.Cert) {
			t.Errorf("%s: chain %d certs, want the CA", filepath.Base(path), len(chain))
		}
		set, app, n := certid.Identity(leaf)
		if n != 1 || set != "bank-prod" || app != "com.example.bank" {
			t.Errorf("identity after round trip: %q %q %d", set, app, n)
		}
		bi, ok, err := certid.ParseBuildInfo(leaf)
		if err != nil || !ok || bi != testBuild() {
			t.Errorf("build info after round trip: %+v %v %v", bi, ok, err)
		}
	}
}

func TestCertificateParsesInOpenSSL(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	iss, err := ca.Issue(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "leaf.pem")
	os.WriteFile(path, pemEncode("CERTIFICATE", iss.Cert.Raw), 0o600)
	text, err := openssl(t, "x509", "-in", path, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl x509 -text: %v\n%s", err, text)
	}
	for _, want := range []string{
		"URI:mcc://bank-prod/com.example.bank",
		"description = mcc-build/v1?",
		"id=build-4711",
		"serialNumber = build-4711",
		"TLS Web Client Authentication",
		"CA:FALSE",
		"Digital Signature",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caPath, pemEncode("CERTIFICATE", ca.Cert.Raw), 0o600)
	if s, err := openssl(t, "verify", "-CAfile", caPath, "-purpose", "sslclient", path); err != nil {
		t.Errorf("openssl verify -purpose sslclient: %v\n%s", err, s)
	}
}

var hexPassword = regexp.MustCompile(`^[0-9a-f]{32,}$`)

func TestBundleFilesArePrivateAndPasswordsUnique(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	out1, _ := issueToFiles(t, ca)
	out2, _ := issueToFiles(t, ca)
	legacy1 := filepath.Join(filepath.Dir(out1), "app-legacy.p12")
	for _, p := range []string{out1, PasswordPath(out1), legacy1, PasswordPath(legacy1)} {
		assertMode(t, p, 0o600)
	}
	assertMode(t, RecordPathFor(out1), 0o644)
	seen := map[string]bool{}
	for _, p := range []string{PasswordPath(out1), PasswordPath(legacy1), PasswordPath(out2)} {
		pw, err := ReadPasswordFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !hexPassword.MatchString(pw) {
			t.Errorf("password in %s is not >= 32 hex chars (len %d)", filepath.Base(p), len(pw))
		}
		if seen[pw] {
			t.Error("a password was reused across bundles")
		}
		seen[pw] = true
	}
	// Output files are never overwritten.
	if _, err := ca.IssueFiles(IssueFilesOptions{Request: testRequest(), Out: out1}); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("reissue over existing bundle: err = %v", err)
	}
}
