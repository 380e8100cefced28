package testpki_test

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/pki/certid"
)

func verify(ca *testpki.CA, l *testpki.Leaf, eku x509.ExtKeyUsage, inter ...*x509.Certificate) error {
	opts := x509.VerifyOptions{Roots: testpki.Pool(ca), Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{eku}}
	for _, c := range inter {
		opts.Intermediates.AddCert(c)
	}
	_, err := l.Cert.Verify(opts)
	return err
}

func TestClientCarriesIdentityAndBuild(t *testing.T) {
	ca := testpki.NewCA(t, "app CA")
	l := ca.Client(t, "bank-prod", "com.example.bank")
	if err := verify(ca, l, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	if set, app, n := certid.Identity(l.Cert); n != 1 || set != "bank-prod" || app != "com.example.bank" {
		t.Errorf("identity = %q %q (%d URIs)", set, app, n)
	}
	if b, ok, err := certid.ParseBuildInfo(l.Cert); err != nil || !ok || b.ID != testpki.Build().ID {
		t.Errorf("build = %+v %v %v", b, ok, err)
	}
}

func TestVariantsHaveTheirOneDefect(t *testing.T) {
	ca := testpki.NewCA(t, "app CA")
	now := time.Now()
	if l := ca.Expired(t, "s", "a"); !l.Cert.NotAfter.Before(now) {
		t.Error("Expired is not expired")
	}
	if l := ca.NotYetValid(t, "s", "a"); !l.Cert.NotBefore.After(now) {
		t.Error("NotYetValid is valid")
	}
	if err := verify(ca, ca.WrongEKU(t, "s", "a"), x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("WrongEKU verifies for client auth")
	}
	if k, ok := ca.WeakKey(t, "s", "a").Cert.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 1024 {
		t.Error("WeakKey is not RSA 1024")
	}
}

func TestServerAndPeerForMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "control CA")
	srv := ca.Server(t, "localhost", "127.0.0.1")
	if err := verify(ca, srv, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	if err := srv.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	peer := ca.Peer(t, "envoy-edge", "spiffe://mcc/envoy/edge")
	if err := verify(ca, peer, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	if len(peer.Cert.URIs) != 1 || peer.Cert.URIs[0].String() != "spiffe://mcc/envoy/edge" {
		t.Errorf("peer URIs = %v", peer.Cert.URIs)
	}
	// pki's own checks apply: a server certificate needs a name.
	if _, err := ca.IssueControl(testpki.ServerRequest()); err == nil {
		t.Error("a server certificate without names was issued")
	}
}

func TestIntermediateChains(t *testing.T) {
	root := testpki.NewRoot(t, "root")
	inter := root.Intermediate(t, "intermediate")
	l := inter.Client(t, "s", "a")
	if err := verify(root, l, x509.ExtKeyUsageClientAuth, inter.Cert); err != nil {
		t.Fatal(err)
	}
	if err := verify(root, l, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("verified without the intermediate")
	}
	if _, err := inter.IssueControl(testpki.ServerRequest("localhost")); err == nil {
		t.Error("an intermediate without a directory issued a control certificate")
	}
}

func TestCRLRevokesAndExpires(t *testing.T) {
	ca := testpki.NewCA(t, "app CA")
	l := ca.Client(t, "s", "a")
	for _, next := range []time.Time{time.Now().Add(time.Hour), time.Now().Add(-time.Hour)} {
		b, _ := pem.Decode(ca.CRL(t, next, l.Cert))
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
			t.Fatal(err)
		}
		if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(l.Cert.SerialNumber) != 0 {
			t.Error("CRL does not list the leaf")
		}
		if !crl.NextUpdate.Equal(next.UTC().Truncate(time.Second)) || !crl.ThisUpdate.Before(crl.NextUpdate) {
			t.Errorf("CRL dates %v..%v, want next %v", crl.ThisUpdate, crl.NextUpdate, next)
		}
	}
}

func TestSelfSignedVerifiesOnlyAgainstItself(t *testing.T) {
	l := testpki.SelfSigned(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "edge"},
		DNSNames:    []string{"api.bank.example"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, nil)
	if err := l.Cert.CheckSignature(l.Cert.SignatureAlgorithm, l.Cert.RawTBSCertificate, l.Cert.Signature); err != nil {
		t.Fatal(err)
	}
	if l.Cert.Issuer.String() != l.Cert.Subject.String() || l.Cert.SerialNumber.Sign() <= 0 {
		t.Errorf("issuer %q subject %q serial %v", l.Cert.Issuer, l.Cert.Subject, l.Cert.SerialNumber)
	}
	if err := verify(testpki.NewCA(t, "other"), l, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a self-signed certificate verified against another CA")
	}
}
