package fusion_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

func TestRevocationByCRLAndFingerprint(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	victim := c.Issue(t, nil, nil)
	other := c.Issue(t, nil, nil)
	crl := filepath.Join(c.Dir, "crl.pem")
	writeCRL(t, crl, c.CACert, c.CAKey, []*big.Int{big.NewInt(12345), victim.Leaf().SerialNumber})
	sum := sha256.Sum256(other.Chain[0])

	e := loadEngine(t, c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) {
		s.Revocation.CRLs = []string{"crl.pem"}
		s.Revocation.Fingerprints = []string{"sha256:" + hex.EncodeToString(sum[:])}
	}), fusion.Options{})
	set, _ := e.Set(c.SetID)
	if got := set.CRLFiles(); len(got) != 1 || got[0] != crl {
		t.Errorf("CRLFiles = %v", got)
	}

	d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain})
	if d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("CRL-revoked cert: %+v", d)
	}
	d = e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: other.Chain})
	if d.Reason != threat.ReasonCertRevoked || d.Event.ReasonData["sha256"] != hex.EncodeToString(sum[:]) {
		t.Fatalf("fingerprint-revoked cert: %+v", d.Event)
	}

	// A new CRL without the victim: reloading un-revokes it.
	writeCRL(t, crl, c.CACert, c.CAKey, []*big.Int{big.NewInt(12345)})
	if err := e.ReloadRevocations(); err != nil {
		t.Fatal(err)
	}
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Action != fusion.Allow {
		t.Fatalf("after CRL update: %+v", d)
	}

	// A CRL signed by someone else is refused on reload; the last good
	// revocation data stays in force.
	writeOtherCRL(t, c.Dir)
	if err := copyFile(filepath.Join(c.Dir, "other-crl.pem"), crl); err != nil {
		t.Fatal(err)
	}
	if err := e.ReloadRevocations(); err == nil {
		t.Fatal("foreign CRL accepted on reload")
	}
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: other.Chain}); d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("revocation data lost after a failed reload: %+v", d)
	}
}

func TestRevocationDERCRL(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	victim := c.Issue(t, nil, nil)
	pemPath := filepath.Join(c.Dir, "crl.pem")
	writeCRL(t, pemPath, c.CACert, c.CAKey, []*big.Int{victim.Leaf().SerialNumber})
	data, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if err := os.WriteFile(filepath.Join(c.Dir, "crl.der"), block.Bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	e := loadEngine(t, c.WriteSetFile(t, "der.yaml", func(s *fusion.SetConfig) { s.Revocation.CRLs = []string{"crl.der"} }), fusion.Options{})
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("DER CRL: %+v", d)
	}
}
