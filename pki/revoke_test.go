package pki

import (
	"bytes"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRevokeUpdatesListAndCRL(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	_, res := issueToFiles(t, ca)
	serial := res.Issued.Cert.SerialNumber

	r, err := ca.Revoke(RevokeRequest{Serial: serial, Reason: "key-compromise", CRLValidity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Known || r.AlreadyRevoked || r.Reason != "keyCompromise" || r.CRLNumber.Int64() != 2 {
		t.Errorf("result %+v", r)
	}
	txt, err := os.ReadFile(ca.Path(RevokedFile))
	if err != nil {
		t.Fatal(err)
	}
	if !hasLine(string(txt), FormatSerial(serial)) || !strings.Contains(string(txt), "reason=keyCompromise") {
		t.Errorf("revoked.txt:\n%s", txt)
	}
	assertMode(t, ca.Path(RevokedFile), 0o644)
	assertMode(t, ca.Path(CRLFile), 0o644)

	crl, err := ca.LoadCRL() // checks the CA's signature
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(serial) != 0 ||
		crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Errorf("CRL entries %+v", crl.RevokedCertificateEntries)
	}
	if d := crl.NextUpdate.Sub(crl.ThisUpdate); d != 48*time.Hour {
		t.Errorf("NextUpdate - ThisUpdate = %s", d)
	}
	// OpenSSL agrees.
	if out, err := openssl(t, "crl", "-in", ca.Path(CRLFile), "-CAfile", ca.Path(CACertFile), "-noout", "-text"); err != nil ||
		!strings.Contains(out, "verify OK") || !strings.Contains(strings.ToUpper(out), strings.ToUpper(FormatSerial(serial))) {
		t.Errorf("openssl crl: %v\n%s", err, out)
	}

	// An unknown serial is refused without Force, and nothing changes.
	unknown := big.NewInt(0xabcdef)
	crlBefore, _ := os.ReadFile(ca.Path(CRLFile))
	if _, err := ca.Revoke(RevokeRequest{Serial: unknown}); !errors.Is(err, ErrUnknownSerial) {
		t.Fatalf("unknown serial without Force: err = %v, want ErrUnknownSerial", err)
	}
	if crlAfter, _ := os.ReadFile(ca.Path(CRLFile)); !bytes.Equal(crlBefore, crlAfter) {
		t.Error("a refused revocation changed the CRL")
	}
	// With Force it is revoked, flagged, and the CRL number grows.
	r2, err := ca.Revoke(RevokeRequest{Serial: unknown, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Known || r2.CRLNumber.Cmp(r.CRLNumber) <= 0 {
		t.Errorf("second revocation %+v", r2)
	}
	// Revoking again is idempotent for the lists but re-signs the CRL.
	r3, err := ca.Revoke(RevokeRequest{Serial: serial})
	if err != nil || !r3.AlreadyRevoked || r3.CRLNumber.Cmp(r2.CRLNumber) <= 0 {
		t.Fatalf("re-revoke: %+v %v", r3, err)
	}
	txt, _ = os.ReadFile(ca.Path(RevokedFile))
	if n := strings.Count(string(txt), "\n"+FormatSerial(serial)+"\n"); n != 1 {
		t.Errorf("serial listed %d times", n)
	}
	crl, _ = ca.LoadCRL()
	if len(crl.RevokedCertificateEntries) != 2 {
		t.Errorf("CRL has %d entries, want 2", len(crl.RevokedCertificateEntries))
	}
	refreshed, err := ca.RefreshCRL(0)
	if err != nil || refreshed.Number.Cmp(crl.Number) <= 0 || len(refreshed.RevokedCertificateEntries) != 2 {
		t.Errorf("RefreshCRL: %v", err)
	}
	if _, err := ca.Revoke(RevokeRequest{Serial: serial, Reason: "bored"}); err == nil {
		t.Error("unknown reason accepted")
	}
	// No temp files left behind by the atomic writes.
	ents, _ := os.ReadDir(ca.Dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temp file %s", e.Name())
		}
	}
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestRevokeKeepsHandAddedLines(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	f, _ := os.OpenFile(ca.Path(RevokedFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("sha256:" + strings.Repeat("ab", 32)) // no trailing newline
	f.Close()
	if _, err := ca.Revoke(RevokeRequest{Serial: big.NewInt(0x1234), Force: true}); err != nil {
		t.Fatal(err)
	}
	txt, _ := os.ReadFile(ca.Path(RevokedFile))
	if !hasLine(string(txt), "sha256:"+strings.Repeat("ab", 32)) || !hasLine(string(txt), "1234") {
		t.Errorf("revoked.txt:\n%s", txt)
	}
}
