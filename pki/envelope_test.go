package pki

import (
	"bytes"
	"errors"
	"testing"
)

// TestEnvelopeBundle: an enveloped bundle opens with its password through
// DecodeBundle (the record check and the CLI use it), is not a PKCS#12 file
// at rest, and every damaged or wrong-password variant is one clean error.
func TestEnvelopeBundle(t *testing.T) {
	ca := newTestCA(t, CAOptions{Name: "envelope CA"})
	iss, err := ca.Issue(testRequest())
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeBundle(iss, FormatLegacyEnveloped)
	if err != nil {
		t.Fatal(err)
	}
	if !IsEnvelope(b.Data) || b.Params.Cipher != "AES-256-GCM" {
		t.Fatalf("enveloped bundle: magic %q, params %+v", b.Data[:8], b.Params)
	}
	_, leaf, _, err := DecodeBundle(b.Data, b.Password)
	if err != nil || !leaf.Equal(iss.Cert) {
		t.Fatalf("DecodeBundle: %v", err)
	}
	inner, err := OpenEnvelope(b.Data, b.Password)
	if err != nil {
		t.Fatal(err)
	}
	// The inside is the legacy PKCS#12 the platform importers take.
	if _, leaf, _, err := DecodeBundle(inner, b.Password); err != nil || !leaf.Equal(iss.Cert) || IsEnvelope(inner) {
		t.Fatalf("the PKCS#12 inside: %v", err)
	}
	if bytes.Contains(b.Data, iss.Cert.Raw) {
		t.Error("the envelope holds the certificate in the clear")
	}

	for name, data := range map[string][]byte{
		"truncated header": b.Data[:20],
		"no tag":           b.Data[:envelopeHeaderLen+3],
		"flipped byte":     flip(b.Data, len(b.Data)/2),
		"flipped salt":     flip(b.Data, 9),
		"flipped tag":      flip(b.Data, len(b.Data)-1),
	} {
		if _, err := OpenEnvelope(data, b.Password); !errors.Is(err, ErrEnvelopeOpen) {
			t.Errorf("%s: %v, want ErrEnvelopeOpen", name, err)
		}
	}
	if _, _, _, err := DecodeBundle(b.Data, b.Password+"x"); !errors.Is(err, ErrEnvelopeOpen) {
		t.Errorf("a wrong password: %v", err)
	}
	if _, err := OpenEnvelope(inner, b.Password); err == nil {
		t.Error("OpenEnvelope took a bare PKCS#12 file")
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}
