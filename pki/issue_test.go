package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

func TestIssueCertificateProfile(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	iss, err := ca.Issue(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("leaf key %T, want ECDSA P-256", c.PublicKey)
	}
	if c.IsCA || !c.BasicConstraintsValid {
		t.Error("leaf must carry basicConstraints CA:FALSE")
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %b, want digitalSignature only", c.KeyUsage)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v, want clientAuth only", c.ExtKeyUsage)
	}
	if c.SerialNumber.BitLen() < 64 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial has %d bits", c.SerialNumber.BitLen())
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "mcc://bank-prod/com.example.bank" {
		t.Errorf("URI SANs %v", c.URIs)
	}
	if c.Subject.CommonName != "com.example.bank" || c.Subject.Organization[0] != "bank-prod" || c.Subject.SerialNumber != "build-4711" {
		t.Errorf("subject %v", c.Subject)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got < DefaultLeafValidity || got > DefaultLeafValidity+time.Hour {
		t.Errorf("validity %s", got)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify for client auth: %v", err)
	}
	set, app, n := certid.Identity(c)
	if n != 1 || set != "bank-prod" || app != "com.example.bank" {
		t.Errorf("certid.Identity = %q %q %d", set, app, n)
	}
	bi, ok, err := certid.ParseBuildInfo(c)
	if err != nil || !ok || bi != testBuild() {
		t.Errorf("build info round trip: %+v ok=%v err=%v, want %+v", bi, ok, err, testBuild())
	}

	again, err := ca.Issue(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	if again.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two issuances got the same serial")
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestIssueRejectsBadInput(t *testing.T) {
	ca := newTestCA(t, CAOptions{ValidFor: 30 * 24 * time.Hour})
	for name, tc := range map[string]struct {
		mut  func(*IssueRequest)
		want string
	}{
		"no set":          {func(r *IssueRequest) { r.FusionSet = "" }, "fusion set id is empty"},
		"no app":          {func(r *IssueRequest) { r.AppID = "" }, "app id is empty"},
		"upper set":       {func(r *IssueRequest) { r.FusionSet = "Bank" }, "fusion set id"},
		"slash in app":    {func(r *IssueRequest) { r.AppID = "a/b" }, "app id"},
		"no build":        {func(r *IssueRequest) { r.Build.ID = "" }, "build id is empty"},
		"control char":    {func(r *IssueRequest) { r.Build.User = "a\nb" }, "control character"},
		"outlives the CA": {func(r *IssueRequest) { r.ValidFor = 60 * 24 * time.Hour }, "after the CA expires"},
	} {
		t.Run(name, func(t *testing.T) {
			req := testRequest()
			tc.mut(&req)
			_, err := ca.Issue(req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseSerial(t *testing.T) {
	want, _ := new(big.Int).SetString("00ab12cd", 16)
	for _, s := range []string{"ab12cd", "AB12CD", "ab:12:cd", "00:AB:12:CD", "0xab12cd", " ab 12 cd "} {
		got, err := ParseSerial(s)
		if err != nil || got.Cmp(want) != 0 {
			t.Errorf("ParseSerial(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "xyz", "-5", "+5", "0", strings.Repeat("ff", 21)} {
		if _, err := ParseSerial(s); err == nil {
			t.Errorf("ParseSerial(%q) succeeded", s)
		}
	}
	if FormatSerial(want) != "ab12cd" {
		t.Errorf("FormatSerial = %q", FormatSerial(want))
	}
}
