package attestation

import "testing"

// BenchmarkAndroidVerify is the cost an enrollment pays for attestation: a
// real remotely provisioned chain under the RSA root (one RSA-4096 and three
// ECDSA signature checks, the extension parse and the policy checks).
func BenchmarkAndroidVerify(b *testing.B) {
	for _, name := range []string{"akita_sdk34_TEE_EC_NONE", "tegu_sdk36_TEE_EC_2026_ROOT"} {
		b.Run(name, func(b *testing.B) {
			when := map[string]string{"akita_sdk34_TEE_EC_NONE": "2024-09-20T00:00:00Z", "tegu_sdk36_TEE_EC_2026_ROOT": "2026-02-25T00:00:00Z"}[name]
			challenge := map[string]string{"akita_sdk34_TEE_EC_NONE": "Y2hhbGxlbmdl", "tegu_sdk36_TEE_EC_2026_ROOT": teguChallenge}[name]
			req := sampleRequest(b, name, challenge)
			req.Expect.PackageNames = append(req.Expect.PackageNames, "com.google.wireless.android.security.attestationverifier.collector")
			v, err := NewAndroidVerifier(WithClock(at(when)))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
