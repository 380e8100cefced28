package attestation

import (
	"strings"
	"testing"
)

// Refusals on real chains: what a real device produces when it must not pass.

func sampleRequest(t testing.TB, name, challengeB64 string) Request {
	der, certs := sampleChain(t, name)
	return Request{
		Attestation: der,
		Challenge:   mustB64(t, challengeB64),
		PublicKey:   certs[0].PublicKey,
		Expect: Expectations{
			PackageNames:       []string{"com.google.android.attestation"},
			SigningCertDigests: []Digest{mustDigest(t, "EDk47kU35Z6O55L2VFBPuDRvxrNG0LvEQV/DOfz8jsE=")},
		},
	}
}

const teguChallenge = "NjQxN2Y5MmMtZGFlZi00Y2MxLTg4MjgtNWJiMzkzMzhmZmQ1"

func TestAndroidRealSampleRefusals(t *testing.T) {
	google := func(when string) *AndroidVerifier {
		v, err := NewAndroidVerifier(WithClock(at(when)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Run("software attestation root", func(t *testing.T) {
		// A device without hardware attestation signs with the key in
		// Android's source code: anyone can produce this chain.
		r := sampleRequest(t, "marlin_sdk29_TEE_EC_NONE", "Y2hhbGxlbmdl")
		_, err := google("2019-12-01T00:00:00Z").Verify(r)
		if KindOf(err) != KindUntrustedChain || !strings.Contains(err.Error(), "Software Attestation Root") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("extension edited after signing", func(t *testing.T) {
		_, certs := sampleChain(t, "invalid_tags_not_in_ascending_order")
		der, _ := sampleChain(t, "invalid_tags_not_in_ascending_order")
		_, err := google("2023-01-01T00:00:00Z").Verify(Request{Attestation: der, Challenge: []byte("x"), PublicKey: certs[0].PublicKey})
		if KindOf(err) != KindUntrustedChain {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("remotely provisioned intermediate expired", func(t *testing.T) {
		_, err := google("2026-06-01T00:00:00Z").Verify(sampleRequest(t, "tegu_sdk36_TEE_EC_2026_ROOT", teguChallenge))
		if KindOf(err) != KindUntrustedChain || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("another enrollment's challenge", func(t *testing.T) {
		_, err := google("2026-02-25T00:00:00Z").Verify(sampleRequest(t, "tegu_sdk36_TEE_EC_2026_ROOT", "Y2hhbGxlbmdl"))
		if KindOf(err) != KindChallengeMismatch {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("CSR for another key", func(t *testing.T) {
		r := sampleRequest(t, "tegu_sdk36_TEE_EC_2026_ROOT", teguChallenge)
		_, other := sampleChain(t, "tegu_sdk36_SB_EC_2026_ROOT")
		r.PublicKey = other[0].PublicKey
		if _, err := google("2026-02-25T00:00:00Z").Verify(r); KindOf(err) != KindKeyMismatch {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("StrongBox required of a TEE key", func(t *testing.T) {
		r := sampleRequest(t, "tegu_sdk36_TEE_EC_2026_ROOT", teguChallenge)
		r.Expect.MinSecurityLevel = SecurityStrongBox
		if _, err := google("2026-02-25T00:00:00Z").Verify(r); KindOf(err) != KindSecurityLevel {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("revoked attestation key", func(t *testing.T) {
		_, certs := sampleChain(t, "tegu_sdk36_TEE_EC_2026_ROOT")
		v, err := NewAndroidVerifier(WithClock(at("2026-02-25T00:00:00Z")), WithStatusList(statusListFor(t, certs[1].SerialNumber, "REVOKED")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(sampleRequest(t, "tegu_sdk36_TEE_EC_2026_ROOT", teguChallenge)); KindOf(err) != KindRevoked {
			t.Fatalf("got %v", err)
		}
	})
}

// Factory-provisioned keys cannot be rotated: like Google's verifier, an
// expired intermediate of a factory chain (the certificate the root signed is
// serialNumber-named) is accepted, while the status list can still withdraw it.
func TestAndroidFactoryChainOutlivesIntermediates(t *testing.T) {
	r := Request{}
	der, certs := sampleChain(t, "sony-xperia10-iii_sdk33_TEE_EC")
	r.Attestation, r.PublicKey = der, certs[0].PublicKey
	r.Challenge = mustB64(t, "Pq/k1d0AkN5aQrQytCSBr1zimWNlayWExZpJLeFtAMk=")
	r.Expect = Expectations{PackageNames: []string{"com.android.vending"}, SigningCertDigests: []Digest{mustDigest(t, "8P1sW0EPJcslw7UzRsiXL64w+O50Ed+RBICtay1g24M=")}}
	v, err := NewAndroidVerifier(WithClock(at("2027-01-01T00:00:00Z"))) // after the intermediates' 2026-05-24 expiry
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(r); err != nil {
		t.Fatalf("factory chain refused after expiry: %v", err)
	}
	v, err = NewAndroidVerifier(WithClock(at("2027-01-01T00:00:00Z")), WithStatusList(statusListFor(t, certs[1].SerialNumber, "REVOKED")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(r); KindOf(err) != KindRevoked {
		t.Fatalf("got %v", err)
	}
}

// FuzzAndroidChain feeds the whole verifier what the client sends: the
// chain bytes. Nothing may panic, and nothing but the seeds' genuine chain may
// verify (the fuzzer cannot forge Google's signatures).
func FuzzAndroidChain(f *testing.F) {
	der, certs := sampleChain(f, "tegu_sdk36_TEE_EC_2026_ROOT")
	f.Add(der)
	other, _ := sampleChain(f, "akita_sdk34_TEE_EC_NONE")
	f.Add(other)
	f.Add(der[:len(der)/2])
	v, err := NewAndroidVerifier(WithClock(at("2026-02-25T00:00:00Z")))
	if err != nil {
		f.Fatal(err)
	}
	expect := Expectations{PackageNames: []string{"com.google.android.attestation"}, SigningCertDigests: []Digest{mustDigest(f, "EDk47kU35Z6O55L2VFBPuDRvxrNG0LvEQV/DOfz8jsE=")}}
	challenge := mustB64(f, teguChallenge)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := v.Verify(Request{Attestation: data, Challenge: challenge, PublicKey: certs[0].PublicKey, Expect: expect})
		if err != nil {
			if KindOf(err) == "" {
				t.Fatalf("refusal without a kind: %v", err)
			}
			return
		}
		if res.Package != "com.google.android.attestation" {
			t.Fatalf("verified %+v", res)
		}
	})
}
