package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

const installTestID = "3f2b8c1e-6a4d-4f7e-9b1a-2c5d8e9f0a1b"

func installTestCA(t testing.TB) *CA {
	t.Helper()
	ca, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// installCSR makes a CSR for key that asks for an identity of its own, which
// IssueInstall must ignore.
func installCSR(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "com.evil.app", Organization: []string{"other-set"}},
		URIs:     []*url.URL{{Scheme: "mcc", Host: "other-set", Path: "/com.evil.app"}},
		DNSNames: []string{"evil.example"},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

func installKeyP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func installRequest(csr []byte) InstallRequest {
	return InstallRequest{CSR: csr, FusionSet: "bank-prod", AppID: "com.example.bank", Build: testBuild(), InstallID: installTestID}
}

func TestIssueInstallRoundTrip(t *testing.T) {
	ca := installTestCA(t)
	key := installKeyP256(t)
	now := time.Now().Truncate(time.Second)
	req := installRequest(installCSR(t, key))
	req.Now = now
	got, err := ca.IssueInstall(req)
	if err != nil {
		t.Fatalf("IssueInstall: %v", err)
	}
	c := got.Cert
	if !c.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("certificate is not for the CSR's key")
	}
	if set, app, n := certid.Identity(c); n != 1 || set != "bank-prod" || app != "com.example.bank" {
		t.Errorf("identity = %q %q (%d mcc URIs); the CSR's identity must be ignored", set, app, n)
	}
	if len(c.URIs) != 1 || len(c.DNSNames) != 0 || c.Subject.CommonName != "com.example.bank" ||
		len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != "bank-prod" || c.Subject.SerialNumber != testBuild().ID {
		t.Errorf("SANs/Subject taken from the CSR: URIs %v DNS %v Subject %v", c.URIs, c.DNSNames, c.Subject)
	}
	info, ok, err := certid.ParseBuildInfo(c)
	want := testBuild()
	want.Kind, want.InstallID = certid.KindInstall, installTestID
	if err != nil || !ok || info != want || got.Build != want {
		t.Errorf("ParseBuildInfo = %+v, %v, %v; Build %+v; want %+v", info, ok, err, got.Build, want)
	}
	if !c.NotBefore.Equal(now.Add(-time.Minute)) || !c.NotAfter.Equal(now.Add(DefaultInstallValidity)) {
		t.Errorf("validity %s..%s, want %s..%s", c.NotBefore, c.NotAfter, now.Add(-time.Minute), now.Add(DefaultInstallValidity))
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("IsCA %v KeyUsage %v EKU %v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
	}
	if string(got.DER) != string(c.Raw) {
		t.Error("DER differs from the certificate")
	}
	if b, _ := pem.Decode(got.PEM); b == nil || b.Type != "CERTIFICATE" || string(b.Bytes) != string(got.DER) {
		t.Error("PEM does not hold the DER")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Errorf("does not verify under the CA: %v", err)
	}
	// The parsed-CSR input gives the same identity.
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		t.Fatal(err)
	}
	req.CSR, req.ParsedCSR = nil, csr
	again, err := ca.IssueInstall(req)
	if err != nil {
		t.Fatalf("IssueInstall(ParsedCSR): %v", err)
	}
	if again.Build != want || again.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Errorf("ParsedCSR: build %+v, serial reused %v", again.Build, again.Cert.SerialNumber)
	}
	// A parsed CSR whose key was swapped after parsing: the signed key wins.
	csr.PublicKey = installKeyP256(t).Public()
	swapped, err := ca.IssueInstall(req)
	if err != nil {
		t.Fatalf("IssueInstall(swapped ParsedCSR): %v", err)
	}
	if !swapped.Cert.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("certificate is for the swapped key, not the signed one")
	}
}

func TestIssueInstallCappedAtCAExpiry(t *testing.T) {
	ca := installTestCA(t)
	req := installRequest(installCSR(t, installKeyP256(t)))
	req.Now = ca.Cert.NotAfter.Add(-time.Hour)
	req.ValidFor = MaxInstallValidity
	got, err := ca.IssueInstall(req)
	if err != nil {
		t.Fatalf("IssueInstall: %v", err)
	}
	if !got.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", got.Cert.NotAfter, ca.Cert.NotAfter)
	}
	req.Now = ca.Cert.NotAfter.Add(time.Second)
	if _, err := ca.IssueInstall(req); err == nil {
		t.Error("issued after the CA expired")
	}
}

func TestIssueInstallRefusals(t *testing.T) {
	ca := installTestCA(t)
	p256 := installKeyP256(t)
	good := installCSR(t, p256)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-3] ^= 0x40 // inside the ECDSA signature
	big := installOversizedCSR(t, p256)
	parsedBig, err := x509.ParseCertificateRequest(big)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*InstallRequest)
		want string
	}{
		{"bad signature", func(r *InstallRequest) { r.CSR = badSig }, "signature"},
		{"not DER", func(r *InstallRequest) { r.CSR = []byte("-----BEGIN CERTIFICATE REQUEST-----") }, "parsing CSR"},
		{"no CSR", func(r *InstallRequest) { r.CSR = nil }, "exactly one"},
		{"both CSRs", func(r *InstallRequest) { r.ParsedCSR = parsedBig }, "exactly one"},
		{"empty CSR", func(r *InstallRequest) { r.CSR = []byte{} }, "empty"},
		{"RSA key", func(r *InstallRequest) { r.CSR = installCSR(t, rsaKey) }, "P-256"},
		{"P-384 key", func(r *InstallRequest) { r.CSR = installCSR(t, p384) }, "P-256"},
		{"oversized CSR", func(r *InstallRequest) { r.CSR = big }, "larger than"},
		{"oversized parsed CSR", func(r *InstallRequest) { r.CSR, r.ParsedCSR = nil, parsedBig }, "larger than"},
		{"empty install id", func(r *InstallRequest) { r.InstallID = "" }, "install id"},
		{"install id too long", func(r *InstallRequest) { r.InstallID = strings.Repeat("a", 65) }, "install id"},
		{"install id with slash", func(r *InstallRequest) { r.InstallID = "../x" }, "install id"},
		{"install id with query", func(r *InstallRequest) { r.InstallID = "a&id=other" }, "install id"},
		{"install id with control", func(r *InstallRequest) { r.InstallID = "a\nb" }, "install id"},
		{"negative lifetime", func(r *InstallRequest) { r.ValidFor = -time.Second }, "lifetime"},
		{"lifetime over 30 days", func(r *InstallRequest) { r.ValidFor = MaxInstallValidity + time.Second }, "lifetime"},
		{"bad set id", func(r *InstallRequest) { r.FusionSet = "Bank.Prod" }, "fusion set id"},
		{"bad app id", func(r *InstallRequest) { r.AppID = "com.example/../x" }, "app id"},
		{"no build id", func(r *InstallRequest) { r.Build.ID = "" }, "build id"},
		{"build field with control", func(r *InstallRequest) { r.Build.User = "a\x00b" }, "control"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := installRequest(good)
			tc.edit(&req)
			got, err := ca.IssueInstall(req)
			if err == nil || got != nil {
				t.Fatalf("IssueInstall = %v, %v; want an error", got, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	// The edges of the lifetime bound are accepted.
	for _, d := range []time.Duration{time.Nanosecond, MaxInstallValidity} {
		req := installRequest(good)
		req.ValidFor = d
		if _, err := ca.IssueInstall(req); err != nil {
			t.Errorf("lifetime %s: %v", d, err)
		}
	}
	if _, err := ca.IssueInstall(installRequest(good)); err != nil {
		t.Errorf("the unedited request fails: %v", err)
	}
}

// installOversizedCSR returns a validly signed P-256 CSR just over
// MaxInstallCSRSize, so only the size bound refuses it.
func installOversizedCSR(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{DNSNames: []string{strings.Repeat("a", 60) + ".example"}}
	for {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(der) > MaxInstallCSRSize {
			return der
		}
		tmpl.DNSNames = append(tmpl.DNSNames, tmpl.DNSNames[0])
	}
}

func TestCheckInstallIDErrorDoesNotQuoteInput(t *testing.T) {
	secret := "tok\x1b[31m" + strings.Repeat("x", 100)
	err := certid.CheckInstallID(secret)
	if err == nil || strings.Contains(err.Error(), "tok") {
		t.Errorf("CheckInstallID(%q) = %v", secret, err)
	}
}

func FuzzIssueInstallCSR(f *testing.F) {
	ca := installTestCA(f)
	key := installKeyP256(f)
	good := installCSR(f, key)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		got, err := ca.IssueInstall(installRequest(der))
		if err != nil {
			return
		}
		// Whatever was sent, an accepted CSR yields the CA's identity only.
		if set, app, n := certid.Identity(got.Cert); n != 1 || set != "bank-prod" || app != "com.example.bank" || len(got.Cert.URIs) != 1 {
			t.Fatalf("identity %q %q (%d)", set, app, n)
		}
		if len(der) > MaxInstallCSRSize {
			t.Fatalf("accepted a %d-byte CSR", len(der))
		}
	})
}

func BenchmarkIssueInstall(b *testing.B) {
	ca := installTestCA(b)
	csr := installCSR(b, installKeyP256(b))
	req := installRequest(csr)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ca.IssueInstall(req); err != nil {
			b.Fatal(err)
		}
	}
}
