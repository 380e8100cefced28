package pki

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBundleFriendlyNameAndMAC: both bundles carry the key's friendlyName
// (OpenSSL shows it on the key bag), the legacy bundle's MAC is HMAC-SHA1
// over a 2048-iteration key (go-pkcs12's LegacyDES alone uses 1), and
// OpenSSL verifies both MACs after the friendlyName was added.
func TestBundleFriendlyNameAndMAC(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	out, res := issueToFiles(t, ca)
	want := "com.example.bank build-4711 (bank-prod)"
	if got := FriendlyName(res.Issued); got != want {
		t.Fatalf("FriendlyName = %q, want %q", got, want)
	}
	legacy := filepath.Join(filepath.Dir(out), "app-legacy.p12")
	for path, mac := range map[string]string{out: "MAC: sha256, Iteration 2048", legacy: "MAC: sha1, Iteration 2048"} {
		info, err := openssl(t, "pkcs12", "-info", "-nodes", "-in", path, "-passin", "file:"+PasswordPath(path))
		if err != nil {
			t.Fatalf("openssl pkcs12 -info %s: %v\n%s", filepath.Base(path), err, info)
		}
		if !strings.Contains(info, mac) {
			t.Errorf("%s: openssl output lacks %q:\n%s", filepath.Base(path), mac, info)
		}
		// The friendlyName sits in the key bag's attributes, right before
		// the key.
		key := strings.Index(info, "-----BEGIN PRIVATE KEY-----")
		fn := strings.LastIndex(info[:max(key, 0)], "friendlyName: "+want)
		if key < 0 || fn < 0 || strings.Contains(info[fn:key], "BEGIN CERTIFICATE") {
			t.Errorf("%s: no friendlyName %q on the key bag:\n%s", filepath.Base(path), want, info)
		}
	}
	if res.Record.LegacyBundle == nil || res.Record.LegacyBundle.MACIterations != 2048 {
		t.Errorf("record states legacy MAC iterations %+v", res.Record.LegacyBundle)
	}
}

// TestPasswordFileIsThePasswordAsIs reproduces the report of issue 10:
// Node's `passphrase`, read straight from the password file, failed with
// "mac verify failure" because the file ended in a newline. Any consumer
// that takes the whole file as the password now gets the right one (here
// go-pkcs12, which checks the MAC as Node's OpenSSL does; Node 18+ and
// keytool were checked by hand, see the report).
func TestPasswordFileIsThePasswordAsIs(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	out, _ := issueToFiles(t, ca)
	legacy := filepath.Join(filepath.Dir(out), "app-legacy.p12")
	for _, path := range []string{out, legacy} {
		raw, err := os.ReadFile(PasswordPath(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 2*passwordBytes || bytes.ContainsAny(raw, "\r\n") {
			t.Errorf("%s: password file is %q, want %d hex characters and no newline", PasswordPath(path), raw, 2*passwordBytes)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := DecodeBundle(data, string(raw)); err != nil {
			t.Errorf("%s does not open with its password file's whole content: %v", filepath.Base(path), err)
		}
		// openssl reads the file's first line: the same password.
		if o, err := openssl(t, "pkcs12", "-info", "-noout", "-in", path, "-passin", "file:"+PasswordPath(path)); err != nil {
			t.Errorf("openssl -passin file: %v\n%s", err, o)
		}
	}
	// Files with a trailing newline (hand-made, older mcc) still read.
	p := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(p, []byte("secret\r\n"), 0o600)
	if pw, err := ReadPasswordFile(p); err != nil || pw != "secret" {
		t.Errorf("ReadPasswordFile with CRLF: %q %v", pw, err)
	}
}
