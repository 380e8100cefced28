package fusion_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// TestInstallCertificateEvaluatesLikeBuild checks that an install
// certificate from pki.IssueInstall is accepted exactly like a build
// certificate (it verifies under the set's CA with the identity URI), and
// that the build rules apply to it: an install of a blocked build is blocked.
func TestInstallCertificateEvaluatesLikeBuild(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setFile := c.WriteSetFile(t, "install-set.yaml", func(sc *fusion.SetConfig) {
		sc.TrustedCA = fusion.CASource{PEM: string(ca.CertPEM())}
		sc.SPKIPins = nil // install keys are made on the device: nothing to pin
	})
	p, _ := recordingPipeline(t)
	e := loadEngine(t, setFile, fusion.Options{Pipeline: p})

	deviceKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, deviceKey)
	if err != nil {
		t.Fatal(err)
	}
	install := func(buildID string) fusiontest.Case {
		got, err := ca.IssueInstall(pki.InstallRequest{
			CSR: csr, FusionSet: c.SetID, AppID: "com.example.bank", InstallID: "install-1",
			Build: certid.BuildInfo{ID: buildID, Date: time.Now().AddDate(0, 0, -1), User: "ci", Host: "builder-1", SDK: "mcc-sdk/1.4.2"},
		})
		if err != nil {
			t.Fatalf("IssueInstall: %v", err)
		}
		return fusiontest.Case{Name: "install-" + buildID, Chain: [][]byte{got.DER}}
	}

	d := e.Evaluate(context.Background(), c.SetID, request(install(fusiontest.GoodBuild), "192.0.2.1"))
	if d.Action != fusion.Allow || d.Reason != threat.ReasonNone {
		t.Fatalf("install certificate of a good build: %+v", d)
	}
	d = e.Evaluate(context.Background(), c.SetID, request(install(fusiontest.BlockedBuild), "192.0.2.1"))
	if d.Action != fusion.Block || d.Reason != threat.ReasonBuildBlocked {
		t.Fatalf("install certificate of a blocked build: %+v", d)
	}
	if d.Event == nil || d.Event.FusedAppToken != fusiontest.BlockedBuild {
		t.Errorf("event does not name the build: %+v", d.Event)
	}
}
