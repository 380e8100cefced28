package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitCAWritesFilesWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir, CAOptions{Name: "Bank CA", ValidFor: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o700)
	assertMode(t, ca.Path(CAKeyFile), 0o600)
	assertMode(t, ca.Path(CACertFile), 0o644)
	assertMode(t, ca.Path(AuditFile), 0o600)
	if ca.Cert.Subject.CommonName != "Bank CA" || !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero {
		t.Errorf("CA subject/constraints wrong: %v IsCA=%v", ca.Cert.Subject, ca.Cert.IsCA)
	}
	if ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 || ca.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		t.Errorf("CA key usage %b lacks certSign or cRLSign", ca.Cert.KeyUsage)
	}
	if got := ca.Cert.NotAfter.Sub(ca.Cert.NotBefore); got < 48*time.Hour || got > 49*time.Hour {
		t.Errorf("validity %s, want about 48h", got)
	}
	pub, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("default CA key is %T, want ECDSA P-256", ca.Cert.PublicKey)
	}
	if err := ca.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}

	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != ca.Fingerprint() {
		t.Error("LoadCA returned another CA")
	}
	crl, err := loaded.LoadCRL()
	if err != nil {
		t.Fatalf("initial CRL: %v", err)
	}
	if crl.Number.Int64() != 1 || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("initial CRL number %v with %d entries", crl.Number, len(crl.RevokedCertificateEntries))
	}
	if _, err := os.Stat(ca.Path(RevokedFile)); err != nil {
		t.Errorf("revoked.txt not written: %v", err)
	}
}

func TestInitCARefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir, CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(ca.Path(CAKeyFile))
	_, err = InitCA(dir, CAOptions{})
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second InitCA: err = %v, want refusal", err)
	}
	after, _ := os.ReadFile(ca.Path(CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("CA key changed")
	}
}

func TestInitCAKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		kt   KeyType
		want string
	}{
		{KeyECDSAP384, "P-384"},
		{KeyRSA3072, "RSA-3072"},
	} {
		t.Run(string(tc.kt), func(t *testing.T) {
			ca := newTestCA(t, CAOptions{KeyType: tc.kt})
			switch pub := ca.Cert.PublicKey.(type) {
			case *ecdsa.PublicKey:
				if pub.Curve.Params().Name != tc.want {
					t.Errorf("curve %s, want %s", pub.Curve.Params().Name, tc.want)
				}
			case *rsa.PublicKey:
				if pub.N.BitLen() != 3072 {
					t.Errorf("RSA bits %d", pub.N.BitLen())
				}
			}
			// Issuance, records and CRLs work with every CA key type.
			out := filepath.Join(t.TempDir(), "app.p12")
			res, err := ca.IssueFiles(IssueFilesOptions{Request: testRequest(), Out: out})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(RecordPathFor(out))
			if _, err := VerifyRecord(data, ca.Cert, nil); err != nil {
				t.Fatalf("record with %s CA: %v", tc.kt, err)
			}
			if _, err := ca.Revoke(RevokeRequest{Serial: res.Issued.Cert.SerialNumber}); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyAudit(ca.Path(AuditFile), ca.Cert); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := ParseKeyType("dsa-1024"); err == nil {
		t.Error("ParseKeyType accepted dsa-1024")
	}
}

func TestLoadCAErrors(t *testing.T) {
	if _, err := LoadCA(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("LoadCA of a missing directory succeeded")
	}
	a := newTestCA(t, CAOptions{})
	b := newTestCA(t, CAOptions{})
	keyB, _ := os.ReadFile(b.Path(CAKeyFile))
	if err := os.WriteFile(a.Path(CAKeyFile), keyB, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(a.Dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: err = %v", err)
	}
}
