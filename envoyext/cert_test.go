package envoyext

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/envoyext/envoytest"
)

func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "decode test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestDecodePeerCertificateReversesEnvoyEncoding(t *testing.T) {
	der := selfSigned(t)
	enc := envoytest.EncodePeerCertificate(der)
	for _, raw := range []string{"\n", " ", "+", "/", "="} {
		if strings.Contains(enc, raw) {
			t.Fatalf("Envoy's encoding must not leave %q in the value: %s", raw, enc)
		}
	}
	if !strings.HasPrefix(enc, "-----BEGIN%20CERTIFICATE-----%0A") {
		t.Fatalf("unexpected encoding prefix: %.40s", enc)
	}
	got, err := decodePeerCertificate(enc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !bytes.Equal(got, der) {
		t.Fatal("decoded DER differs from the original")
	}
	// Envoy writes upper-case hex; lower case is the same byte and accepted.
	got, err = decodePeerCertificate(strings.ReplaceAll(enc, "%2F", "%2f"))
	if err != nil || !bytes.Equal(got, der) {
		t.Fatalf("lower-case escapes: err=%v", err)
	}
}

func TestDecodePeerCertificateRejectsWhatEnvoyNeverWrites(t *testing.T) {
	der := selfSigned(t)
	enc := envoytest.EncodePeerCertificate(der)
	two := enc + enc
	key := strings.Replace(enc, "CERTIFICATE", "PRIVATE%20KEY", 2)
	cases := []struct {
		name string
		in   string
		want error
	}{
		{"foreign escape", strings.Replace(enc, "%0A", "%41", 1), errBadEscape},
		{"truncated escape", enc[:len(enc)-2], errBadEscape},
		{"not PEM", "hello%20world", errNotPEM},
		{"garbage", "%%%%", errBadEscape},
		{"two blocks", two, errTrailing},
		{"wrong block type", key, errNotCert},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodePeerCertificate(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestXFCCChain(t *testing.T) {
	leaf, inter := selfSigned(t), selfSigned(t)
	h := envoytest.XFCC([][]byte{leaf, inter})
	chain, ok := xfccChain(h, leaf)
	if !ok || len(chain) != 2 || !bytes.Equal(chain[0], leaf) || !bytes.Equal(chain[1], inter) {
		t.Fatalf("chain not read back: ok=%v len=%d", ok, len(chain))
	}
	// Envoy appends its element last (APPEND_FORWARD); a Subject with
	// commas inside quotes must not split the element.
	other := envoytest.XFCC([][]byte{inter})
	if chain, ok := xfccChain(`By=spiffe://x;Subject="CN=a,O=b";`+other+","+h, leaf); !ok || len(chain) != 2 {
		t.Fatalf("last element not found: ok=%v", ok)
	}
	for name, bad := range map[string]string{
		"other leaf":       envoytest.XFCC([][]byte{inter, leaf}),
		"no chain":         `Hash=abc;Cert="x"`,
		"earlier element":  h + "," + other,
		"foreign escape":   strings.Replace(h, "Chain=\"-----BEGIN%20", "Chain=\"-----BEGIN%41", 1),
		"empty":            "",
		"unbalanced quote": `Chain="` + strings.TrimPrefix(h, "Hash="),
	} {
		if _, ok := xfccChain(bad, leaf); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
