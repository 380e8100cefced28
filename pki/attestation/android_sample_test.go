package attestation

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Real attestation chains from Google's verifier (testdata/android/README.md
// names the source, commit and licence). They chain to the roots embedded in
// roots/, so these tests also prove the embedded roots are the ones devices
// use. Each is verified at a time inside its validity.

// sampleChain reads a PEM chain from testdata/android as concatenated DER, the
// form the enrollment sends.
func sampleChain(t testing.TB, name string) ([]byte, []*x509.Certificate) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "android", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	var der []byte
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		der = append(der, b.Bytes...)
		certs = append(certs, c)
	}
	return der, certs
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDigest(t testing.TB, b64 string) Digest {
	t.Helper()
	raw := mustB64(t, b64)
	if len(raw) != 32 {
		t.Fatalf("digest %s is %d bytes", b64, len(raw))
	}
	return Digest(raw)
}

func at(s string) func() time.Time {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return func() time.Time { return tm }
}

// The values below are the ones the source repository's JSON files (copied
// next to each chain) document for that chain.
var samples = []struct {
	name      string
	when      string
	challenge string // base64
	pkg       string
	digest    string // base64
	level     SecurityLevel
	version   int
	boot      BootState
	locked    bool
}{
	{"tegu_sdk36_TEE_EC_2026_ROOT", "2026-02-25T00:00:00Z", "NjQxN2Y5MmMtZGFlZi00Y2MxLTg4MjgtNWJiMzkzMzhmZmQ1", "com.google.android.attestation", "EDk47kU35Z6O55L2VFBPuDRvxrNG0LvEQV/DOfz8jsE=", SecurityTEE, 400, BootVerified, true},
	{"tegu_sdk36_SB_EC_2026_ROOT", "2026-02-25T00:00:00Z", "OTA1NzhlMWQtZjViZi00Y2NmLWEyN2YtYTRmNGQ4OWVlMjFm", "com.google.android.attestation", "EDk47kU35Z6O55L2VFBPuDRvxrNG0LvEQV/DOfz8jsE=", SecurityStrongBox, 300, BootVerified, true},
	{"akita_sdk34_TEE_EC_NONE", "2024-09-20T00:00:00Z", "Y2hhbGxlbmdl", "com.google.wireless.android.security.attestationverifier.collector", "EDk47kU35Z6O55L2VFBPuDRvxrNG0LvEQV/DOfz8jsE=", SecurityTEE, 300, BootUnverified, false},
	{"caiman_sdk36_TEE_EC_RKP", "2025-09-28T00:00:00Z", "ZDY4OGQ3NjMtNjExOC00Y2E2LTk0YjItZTZjZDllZDdlNGU0", "com.google.android.attestation", "EDk47kU35Z6O55L2VFBPuDRvxrNG0LvEQV/DOfz8jsE=", SecurityTEE, 400, BootVerified, true},
	{"sony-xperia10-iii_sdk33_TEE_EC", "2024-01-01T00:00:00Z", "Pq/k1d0AkN5aQrQytCSBr1zimWNlayWExZpJLeFtAMk=", "com.android.vending", "8P1sW0EPJcslw7UzRsiXL64w+O50Ed+RBICtay1g24M=", SecurityTEE, 3, BootVerified, true},
}

func TestAndroidRealSamplesVerify(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			der, certs := sampleChain(t, s.name)
			challenge := mustB64(t, s.challenge)
			v, err := NewAndroidVerifier(WithClock(at(s.when)))
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(Request{
				Attestation: der,
				Challenge:   challenge,
				PublicKey:   certs[0].PublicKey,
				Expect: Expectations{
					PackageNames:       []string{s.pkg},
					SigningCertDigests: []Digest{mustDigest(t, s.digest)},
				},
			})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.Package != s.pkg || res.SecurityLevel != s.level || res.AttestationVersion != s.version {
				t.Errorf("got package %q level %s version %d, want %q %s %d", res.Package, res.SecurityLevel, res.AttestationVersion, s.pkg, s.level, s.version)
			}
			if res.AppIDSource != "software" {
				t.Errorf("application id came from %s, the documented place is softwareEnforced", res.AppIDSource)
			}
			if res.Boot == nil || res.Boot.VerifiedBootState != s.boot || res.Boot.DeviceLocked != s.locked {
				t.Errorf("root of trust %+v, want state %s locked %v", res.Boot, s.boot, s.locked)
			}
			if len(res.SignatureDigests) != 1 || res.SignatureDigests[0] != mustDigest(t, s.digest) {
				t.Errorf("digests %v", res.SignatureDigests)
			}
			if len(res.ChainSerials) != len(certs) {
				t.Errorf("%d serials for %d certificates", len(res.ChainSerials), len(certs))
			}
		})
	}
}
