package fusion_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// TestExampleFile loads examples/fusion-sets.yaml with the CA directories it
// names created the way `mcc ca init` lays them out (ca.pem, revoked.txt,
// crl.pem), so the documented example is always valid.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, set := range []string{"bank-prod", "bank-beta"} {
		makeCADir(t, filepath.Join(dir, "ca", set))
	}
	path := filepath.Join(dir, "fusion-sets.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		t.Fatalf("example refused:\n%v", err)
	}
	if len(cfg.IDs) != 2 || cfg.IDs[0] != "bank-prod" || cfg.IDs[1] != "bank-beta" {
		t.Fatalf("ids %v", cfg.IDs)
	}
	prod, beta := cfg.Sets["bank-prod"], cfg.Sets["bank-beta"]
	if prod.Mode != threat.ModeDefense || !prod.Events || prod.FailSafe.Threshold != 100 || prod.Score(threat.ReasonCertRevoked) != 60 ||
		prod.MaxLifetime != 400*24*time.Hour || prod.DeviceHeaders["deviceID"] != "X-Device-Id" || len(prod.CRLFiles()) != 1 {
		t.Errorf("bank-prod compiled as %+v", prod)
	}
	if beta.Mode != threat.ModeDetection || !beta.Events || beta.AppID != "com.example.bank.beta" {
		t.Errorf("bank-beta compiled as %+v", beta)
	}
	if got := prod.RevokedSerials(); len(got) != 2 || got[0] != "1f2e3d" || got[1] != "beef" {
		t.Errorf("bank-prod revoked serials %v", got)
	}
	if n := len(cfg.WatchedFiles()); n != 6 {
		t.Errorf("watched files %v", cfg.WatchedFiles())
	}
}

// makeCADir writes a CA certificate, a revocation list and a CRL (listing
// serial 0xbeef) into dir.
func makeCADir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcc client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "revoked.txt"), []byte("# mcc revocation list\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeCRL(t, filepath.Join(dir, "crl.pem"), ca, key, []*big.Int{big.NewInt(0xbeef)})
}
