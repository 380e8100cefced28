package envoyext

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/threat"
)

func selfSigned(t *testing.T) []byte {
	t.Helper()
	return testpki.SelfSigned(t, &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "decode test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}, nil).Cert.Raw
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
		{"wrong block type", key, errNotPEM},
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

// The XFCC chain is read by the shared adapter rule: one element (unless
// allowed, then the right-most), a size cap, a per-certificate cap, and a
// chain that must start with the leaf Envoy reported.
func TestXFCCChain(t *testing.T) {
	leaf, inter := selfSigned(t), selfSigned(t)
	s := &Service{limits: limits{maxXFCCBytes: DefaultMaxXFCCBytes, maxCertificateBytes: DefaultMaxCertificateBytes}}
	h := envoytest.XFCC([][]byte{leaf, inter})
	chain, err := s.xfccChain([]string{h}, leaf)
	if err != nil || len(chain) != 2 || !bytes.Equal(chain[0], leaf) || !bytes.Equal(chain[1], inter) {
		t.Fatalf("chain not read back: err=%v len=%d", err, len(chain))
	}
	other := envoytest.XFCC([][]byte{inter})
	multi := `By=spiffe://x;Subject="CN=a,O=b";` + other + "," + h
	refused := func(name string, err error, want threat.Reason) {
		t.Helper()
		var ce *adapter.CertHeaderError
		if !errors.As(err, &ce) || ce.Reason != want {
			t.Errorf("%s: got %v, want a refusal with %s", name, err, want)
		}
	}
	// Envoy in SANITIZE_SET mode writes one element: two are refused.
	_, err = s.xfccChain([]string{multi}, leaf)
	refused("two elements", err, threat.ReasonSpoofedCertHeader)
	_, err = s.xfccChain([]string{other, h}, leaf)
	refused("two header lines", err, threat.ReasonSpoofedCertHeader)
	// Allowed by the operator: the right-most element, Envoy's own; a
	// Subject with commas inside quotes does not split an element.
	multiOK := &Service{limits: s.limits}
	multiOK.limits.xfccMultipleElements = true
	if chain, err := multiOK.xfccChain([]string{multi}, leaf); err != nil || len(chain) != 2 {
		t.Fatalf("right-most element not used: %v", err)
	}
	if _, err := multiOK.xfccChain([]string{h + "," + other}, leaf); !errors.Is(err, errNoXFCCChain) {
		t.Errorf("an earlier element must not be read: %v", err)
	}
	// Not this connection's chain, or no chain at all: the leaf alone.
	for name, v := range map[string]string{
		"other leaf": envoytest.XFCC([][]byte{inter, leaf}),
		"no chain":   `Hash=abc;Cert="x"`,
	} {
		if _, err := s.xfccChain([]string{v}, leaf); !errors.Is(err, errNoXFCCChain) {
			t.Errorf("%s: got %v, want errNoXFCCChain", name, err)
		}
	}
	for name, v := range map[string]string{
		"bad escape":       strings.Replace(h, `Chain="-----BEGIN%20`, `Chain="-----BEGIN%ZZ`, 1),
		"empty":            "",
		"unbalanced quote": h + `;X="open`,
		"too long":         h + ";X=\"" + strings.Repeat("a", DefaultMaxXFCCBytes) + "\"",
		"huge certificate": envoytest.XFCC([][]byte{leaf, bytes.Repeat([]byte{0x30}, DefaultMaxCertificateBytes+1)}),
	} {
		_, err := s.xfccChain([]string{v}, leaf)
		refused(name, err, threat.ReasonCertMalformed)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
