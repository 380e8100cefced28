package authority_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

type authorityEnv struct {
	dir  string
	db   *store.DB
	keys *keys.Sealer
	auth *authority.Authorities
}

func authorityOpen(t *testing.T) *authorityEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := keys.LoadOrCreate(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &authorityEnv{dir: dir, db: db, keys: s, auth: authority.New(db, s, time.Now)}
}

func (e *authorityEnv) ensure(t *testing.T, set string) *x509.Certificate {
	t.Helper()
	var cert *x509.Certificate
	err := e.db.Tx(context.Background(), func(tx *store.Tx) error {
		var err error
		cert, err = e.auth.Ensure(context.Background(), tx, set, "token:admin")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestAuthorityEnsureAndIssue(t *testing.T) {
	ctx := context.Background()
	e := authorityOpen(t)
	if _, err := e.auth.CA(ctx, "bank-prod"); !errors.Is(err, authority.ErrNoCA) {
		t.Fatalf("CA of a set without one: %v", err)
	}
	cert := e.ensure(t, "bank-prod")
	if cert.Subject.CommonName != "mcc bank-prod client CA" || !cert.IsCA {
		t.Fatalf("CA subject %s, IsCA %v", cert.Subject, cert.IsCA)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key %T, want ECDSA P-256", cert.PublicKey)
	}
	if years := cert.NotAfter.Sub(cert.NotBefore).Hours() / 24 / 365; years < 9.9 || years > 10.1 {
		t.Fatalf("CA valid for %.1f years", years)
	}
	if again := e.ensure(t, "bank-prod"); !again.Equal(cert) {
		t.Fatal("a second Ensure made another CA")
	}
	ca, err := e.auth.CA(ctx, "bank-prod")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(cert) || ca.Dir != "" {
		t.Fatalf("CA() is not the stored CA (dir %q)", ca.Dir)
	}
	iss, err := ca.Issue(pki.IssueRequest{FusionSet: "bank-prod", AppID: "com.example.bank", Build: certid.BuildInfo{ID: "b1"}})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("an issued certificate does not chain to the stored CA: %v", err)
	}
	// A fresh Authorities (another instance) opens the same key.
	other, err := authority.New(e.db, e.keys, nil).CA(ctx, "bank-prod")
	if err != nil || !other.Cert.Equal(cert) {
		t.Fatalf("another instance: %v", err)
	}
	entries, err := e.db.ReadAudit(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Action != store.AuditCACreate || entries[0].Subject != "fusion-set/bank-prod" ||
		entries[0].Detail["fingerprint"] != pki.Fingerprint(cert.Raw) {
		t.Fatalf("audit %+v", entries)
	}
	err = e.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := e.auth.Ensure(ctx, tx, "Bank_Prod", "token:admin")
		return err
	})
	if err == nil {
		t.Fatal("Ensure accepted an invalid set id")
	}
}

// The CA key is in the database only sealed: neither its PEM nor its raw
// private scalar is in the SQLite files.
func TestAuthorityKeyIsSealed(t *testing.T) {
	ctx := context.Background()
	e := authorityOpen(t)
	e.ensure(t, "bank-prod")
	ca, err := e.auth.CA(ctx, "bank-prod")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	scalar := ca.Key.(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32))
	files, _ := filepath.Glob(filepath.Join(e.dir, store.FileName+"*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("PRIVATE KEY")) || bytes.Contains(data, block.Bytes) || bytes.Contains(data, scalar) {
			t.Fatalf("%s holds the CA key in the clear", filepath.Base(f))
		}
	}
}

func TestAuthorityWrongKEK(t *testing.T) {
	ctx := context.Background()
	e := authorityOpen(t)
	e.ensure(t, "bank-prod")
	otherKEK, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = authority.New(e.db, otherKEK, nil).CA(ctx, "bank-prod")
	if !errors.Is(err, keys.ErrWrongKEK) {
		t.Fatalf("CA with another KEK: %v", err)
	}
}

// A sealed key is bound to its set: set A's sealed key copied into set B's
// row does not open as B's.
func TestAuthoritySealedKeyBoundToSet(t *testing.T) {
	ctx := context.Background()
	e := authorityOpen(t)
	e.ensure(t, "bank-a")
	e.ensure(t, "bank-b")
	if _, err := e.db.Exec(ctx, `UPDATE cas SET key_sealed = (SELECT key_sealed FROM cas WHERE fusion_set = 'bank-a') WHERE fusion_set = 'bank-b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := authority.New(e.db, e.keys, nil).CA(ctx, "bank-b"); err == nil {
		t.Fatal("set A's sealed key opened as set B's")
	}
	if _, err := authority.New(e.db, e.keys, nil).CA(ctx, "bank-a"); err != nil {
		t.Fatal(err)
	}
}

func TestAuthorityImport(t *testing.T) {
	ctx := context.Background()
	e := authorityOpen(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	fileCA, err := pki.InitCA(caDir, pki.CAOptions{Name: "bank CA"})
	if err != nil {
		t.Fatal(err)
	}
	fileCRL, err := fileCA.LoadCRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.auth.Import(ctx, "bank-prod", caDir, "cli:alice"); err != nil {
		t.Fatal(err)
	}
	ca, err := e.auth.CA(ctx, "bank-prod")
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint() != fileCA.Fingerprint() {
		t.Fatal("the imported CA is not the directory's")
	}
	// The server's CRL numbering continues the file's.
	crl, err := e.db.CRL(ctx, "bank-prod")
	if err != nil {
		t.Fatal(err)
	}
	if crl.Number != fileCRL.Number.Int64() || !bytes.Equal(crl.DER, fileCRL.Raw) {
		t.Fatalf("seeded CRL number %d, want %s", crl.Number, fileCRL.Number)
	}
	err = e.auth.Import(ctx, "bank-prod", caDir, "cli:alice")
	if !errors.Is(err, authority.ErrCAExists) {
		t.Fatalf("a second import into the set: %v", err)
	}
	entries, _ := e.db.ReadAudit(ctx, 0, 10)
	if len(entries) != 1 || entries[0].Action != store.AuditCAImport || entries[0].Actor != "cli:alice" {
		t.Fatalf("audit %+v", entries)
	}
	// Ensure keeps the imported CA.
	if cert := e.ensure(t, "bank-prod"); !cert.Equal(fileCA.Cert) {
		t.Fatal("Ensure replaced the imported CA")
	}
	// Another set may not share it: each set numbers its own CRL, and a
	// gateway refuses a lower CRL number from an issuer it has seen.
	err = e.auth.Import(ctx, "bank-beta", caDir, "cli:alice")
	if err == nil || !strings.Contains(err.Error(), `already the CA of fusion set "bank-prod"`) {
		t.Fatalf("importing one CA into a second set: %v", err)
	}
	if _, err := e.db.CAOf(ctx, "bank-beta"); err == nil {
		t.Fatal("the refused import stored a CA for bank-beta")
	}
	if err := e.auth.Import(ctx, "Bad Set", caDir, "cli:alice"); err == nil {
		t.Fatal("imported into an invalid set id")
	}
	if err := e.auth.Import(ctx, "empty", t.TempDir(), "cli:alice"); err == nil {
		t.Fatal("imported an empty directory")
	}
}

// A CA that revoked certificates is refused: its revocations would be
// lost at the server's first CRL.
func TestAuthorityImportRefusesRevocations(t *testing.T) {
	ctx := context.Background()
	e := authorityOpen(t)
	caDir := filepath.Join(t.TempDir(), "ca")
	fileCA, err := pki.InitCA(caDir, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fileCA.Revoke(pki.RevokeRequest{Serial: big.NewInt(12345), Force: true}); err != nil {
		t.Fatal(err)
	}
	err = e.auth.Import(ctx, "bank-prod", caDir, "cli:alice")
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("import of a CA with revocations: %v", err)
	}
	if _, err := e.auth.CA(ctx, "bank-prod"); !errors.Is(err, authority.ErrNoCA) {
		t.Fatalf("the refused CA was stored: %v", err)
	}
	// A fingerprint added by hand to revoked.txt counts too.
	dir2 := filepath.Join(t.TempDir(), "ca2")
	if _, err := pki.InitCA(dir2, pki.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir2, pki.RevokedFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("sha256:" + strings.Repeat("ab", 32) + "\n")
	f.Close()
	if err := e.auth.Import(ctx, "bank-prod", dir2, "cli:alice"); err == nil {
		t.Fatal("imported a CA whose revoked.txt lists a fingerprint")
	}
}
