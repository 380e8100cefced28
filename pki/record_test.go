package pki

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func recordFixture(t *testing.T) (ca *CA, out string, rec []byte, bundle *BundleToVerify) {
	t.Helper()
	ca = newTestCA(t, CAOptions{})
	out = filepath.Join(t.TempDir(), "app.p12")
	_, err := ca.IssueFiles(IssueFilesOptions{
		Request: testRequest(), Out: out,
		Protections: &Protections{Mode: "defense", ThreatEvents: true, IdentityURI: "mcc://bank-prod/com.example.bank",
			TrustedCA: []string{ca.Fingerprint()}, CryptoFloor: CryptoFloor{MinRSABits: 2048, AllowedCurves: []string{"P-256"}, RequireClientAuthEKU: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec, err = os.ReadFile(RecordPathFor(out))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	pw, _ := ReadPasswordFile(PasswordPath(out))
	return ca, out, rec, &BundleToVerify{Data: data, Password: pw}
}

func wantCheck(t *testing.T, err error, check RecordCheck) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Check != check {
		t.Fatalf("err = %v, want the %s check to fail", err, check)
	}
}

func TestRecordVerifies(t *testing.T) {
	ca, _, rec, bundle := recordFixture(t)
	r, err := VerifyRecord(rec, ca.Cert, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if r.Schema != RecordSchema || r.Build.ID != "build-4711" || r.Bundle.Cipher != "AES-256-CBC" || r.Bundle.PRF != "hmacWithSHA256" ||
		r.Bundle.KDF != "PBKDF2" || r.Bundle.MAC != "sha256" || r.Protections == nil || r.Protections.Mode != "defense" {
		t.Errorf("record content: %+v", r)
	}
	if !strings.Contains(r.Certificate.Subject, "description=mcc-build/v1?") {
		t.Errorf("subject %q", r.Certificate.Subject)
	}
	if bytes.Contains(rec, []byte(bundle.Password)) {
		t.Fatal("record contains the bundle password")
	}
}

func TestRecordTamperingFails(t *testing.T) {
	ca, _, rec, bundle := recordFixture(t)
	t.Run("build id", func(t *testing.T) {
		bad := bytes.Replace(rec, []byte(`"id": "build-4711"`), []byte(`"id": "build-4712"`), 1)
		if bytes.Equal(bad, rec) {
			t.Fatal("fixture has no build id")
		}
		_, err := VerifyRecord(bad, ca.Cert, nil)
		wantCheck(t, err, CheckSignature)
	})
	t.Run("protections", func(t *testing.T) {
		bad := bytes.Replace(rec, []byte(`"mode": "defense"`), []byte(`"mode": "detect"`), 1)
		_, err := VerifyRecord(bad, ca.Cert, nil)
		wantCheck(t, err, CheckSignature)
	})
	t.Run("one byte anywhere", func(t *testing.T) {
		// Flip every byte position in turn that is not whitespace; each
		// must fail some check.
		for i := 0; i < len(rec); i += 7 {
			if rec[i] == ' ' || rec[i] == '\n' {
				continue
			}
			bad := bytes.Clone(rec)
			bad[i] ^= 0x01
			if _, err := VerifyRecord(bad, ca.Cert, nil); err == nil {
				t.Fatalf("flipping byte %d (%q) still verifies", i, rec[i])
			}
		}
	})
	t.Run("reformatted", func(t *testing.T) {
		bad := bytes.Replace(rec, []byte("\n  "), []byte("\n   "), 1)
		_, err := VerifyRecord(bad, ca.Cert, nil)
		wantCheck(t, err, CheckCanonical)
	})
	t.Run("unknown field", func(t *testing.T) {
		bad := bytes.Replace(rec, []byte(`"schema"`), []byte(`"note": "x", "schema"`), 1)
		_, err := VerifyRecord(bad, ca.Cert, nil)
		wantCheck(t, err, CheckParse)
	})
	t.Run("other CA", func(t *testing.T) {
		other := newTestCA(t, CAOptions{})
		_, err := VerifyRecord(rec, other.Cert, nil)
		wantCheck(t, err, CheckCA)
	})
	t.Run("bundle byte", func(t *testing.T) {
		bad := bytes.Clone(bundle.Data)
		bad[len(bad)/2] ^= 0x01
		_, err := VerifyRecord(rec, ca.Cert, &BundleToVerify{Data: bad, Password: bundle.Password})
		wantCheck(t, err, CheckBundleHash)
	})
	t.Run("bundle password", func(t *testing.T) {
		_, err := VerifyRecord(rec, ca.Cert, &BundleToVerify{Data: bundle.Data, Password: strings.Repeat("0", 64)})
		wantCheck(t, err, CheckBundleOpen)
	})
}
