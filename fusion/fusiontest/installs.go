package fusiontest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
)

// KindCA issues build and install certificates for a corpus's set the way
// mcc does (pki.Issue and pki.IssueInstall), so that tests of installs.accept,
// installs.max_lifetime and clone blocking see the real metadata. Sets
// trusting it are written with Trust.
type KindCA struct {
	CA     *pki.CA
	corpus *Corpus
}

// NewKindCA returns a fresh CA for c's set and app.
func NewKindCA(t testing.TB, c *Corpus) *KindCA {
	t.Helper()
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatalf("creating the CA: %v", err)
	}
	return &KindCA{CA: ca, corpus: c}
}

// Trust makes sc trust the CA (and nothing pinned: install keys are made
// on the device).
func (k *KindCA) Trust(sc *fusion.SetConfig) {
	sc.TrustedCA = fusion.CASource{PEM: string(k.CA.CertPEM())}
	sc.SPKIPins = nil
}

func (k *KindCA) buildInfo(buildID string) certid.BuildInfo {
	return certid.BuildInfo{ID: buildID, Date: time.Now().AddDate(0, 0, -1), User: "ci", Host: "builder-1", SDK: "mcc-sdk/1.4.2"}
}

// Build issues a build certificate (the bundle shipped in the app), living
// 30 days: within the corpus set's max_lifetime.
func (k *KindCA) Build(t testing.TB, buildID string) Case {
	t.Helper()
	got, err := k.CA.Issue(pki.IssueRequest{FusionSet: k.corpus.SetID, AppID: k.corpus.AppID, Build: k.buildInfo(buildID), ValidFor: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return Case{Name: "build-" + buildID, Chain: [][]byte{got.Cert.Raw}, Key: got.Key}
}

// Install issues an install certificate of buildID for a P-256 key made
// here as a device would, living validFor (pki's default when zero).
func (k *KindCA) Install(t testing.TB, buildID, installID string, validFor time.Duration) Case {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.CA.IssueInstall(pki.InstallRequest{
		CSR: csr, FusionSet: k.corpus.SetID, AppID: k.corpus.AppID, InstallID: installID,
		Build: k.buildInfo(buildID), ValidFor: validFor,
	})
	if err != nil {
		t.Fatalf("IssueInstall: %v", err)
	}
	return Case{Name: "install-" + installID, Chain: [][]byte{got.DER}, Key: key}
}
