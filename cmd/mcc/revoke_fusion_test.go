package main

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
)

// The fusion engine reads what `mcc revoke` writes (revoked.txt and
// crl.pem): after revocation the same certificate is refused as
// CERT_REVOKED.
func TestRevokedCertificateIsRefusedByFusion(t *testing.T) {
	caDir := newCADir(t)
	setFile := writeSetFile(t, caDir)
	out := filepath.Join(t.TempDir(), "app.p12")
	if code, _, stderr := runCLI(t, issueArgs(caDir, out, "--fusion-set-file", setFile)...); code != 0 {
		t.Fatal(stderr)
	}
	_, leaf, _, err := pki.DecodeBundle(pkiReadFile(t, out), pkiBundlePassword(t, out))
	if err != nil {
		t.Fatal(err)
	}
	evaluate := func() string {
		cfg, err := fusion.LoadFile(setFile)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := fusion.NewEngine(cfg, fusion.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d := eng.Evaluate(context.Background(), "bank-prod", &fusion.Request{PeerCertificates: [][]byte{leaf.Raw}, ClientIP: "127.0.0.1"})
		return string(d.Reason)
	}
	if r := evaluate(); r != "" {
		t.Fatalf("fresh certificate refused: %s", r)
	}
	if code, _, stderr := runCLI(t, "revoke", "--ca", caDir, "--cert", pkiPEMFile(t, leaf.Raw)); code != 0 {
		t.Fatal(stderr)
	}
	if r := evaluate(); r != "CERT_REVOKED" {
		t.Fatalf("revoked certificate: reason %q, want CERT_REVOKED", r)
	}
}

func pkiPEMFile(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cert.pem")
	writePKITestFile(t, p, pkiPEMBlock("CERTIFICATE", der))
	return p
}

func writePKITestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pkiPEMBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
