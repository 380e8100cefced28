package attestation

import (
	"bytes"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestAndroidBuiltChainVerifies(t *testing.T) {
	f := newFixture(t)
	res, err := f.verifier(t).Verify(f.request(f.chain(t, defaultKD(t).encode(t))))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if res.Format != FormatAndroidKey || res.SecurityLevel != SecurityTEE || res.Package != testPackage || res.AttestationVersion != 400 {
		t.Errorf("result %+v", res)
	}
	if len(res.Packages) != 1 || res.Packages[0].Version != 42 {
		t.Errorf("packages %+v", res.Packages)
	}
	if res.Boot == nil || res.Boot.VerifiedBootState != BootVerified || !res.Boot.DeviceLocked {
		t.Errorf("root of trust %+v", res.Boot)
	}
	if len(res.SignatureDigests) != 1 || res.SignatureDigests[0] != testDigest || res.AppIDSource != "software" {
		t.Errorf("digests %v from %s", res.SignatureDigests, res.AppIDSource)
	}
}

// TestAndroidRefusals covers every refusal kind the Android verifier has,
// each case changing one thing of an otherwise valid enrollment.
func TestAndroidRefusals(t *testing.T) {
	f := newFixture(t)
	good := func() kdOptions { return defaultKD(t) }
	valid := f.chain(t, good().encode(t))

	cases := []struct {
		name   string
		req    func(t *testing.T) Request
		opts   []AndroidOption
		want   Kind
		detail string
	}{
		{"empty evidence", func(t *testing.T) Request { return f.request(nil) }, nil, KindMalformed, "empty"},
		{"garbage", func(t *testing.T) Request { return f.request([]byte("not a certificate chain")) }, nil, KindMalformed, "certificate 0"},
		{"trailing garbage after the chain", func(t *testing.T) Request { return f.request(append(bytes.Clone(valid), 0x30, 0x03, 1, 2)) }, nil, KindMalformed, "certificate 3"},
		{"two certificates", func(t *testing.T) Request {
			return f.request(concat(f.leaf(t, good().encode(t), f.root, f.rootKey), f.root))
		}, nil, KindMalformed, "at least 3"},
		{"eleven certificates", func(t *testing.T) Request {
			return f.request(append(bytes.Clone(valid), bytes.Repeat(f.root.Raw, 8)...))
		}, nil, KindMalformed, "longer than 10"},
		{"oversized certificate", func(t *testing.T) Request {
			o := good()
			o.software = append(o.software, entry{800, mustMarshal(t, make([]byte, MaxCertSize))})
			return f.request(f.chain(t, o.encode(t)))
		}, nil, KindMalformed, "over the 16384-byte limit"},
		{"chain over the total limit", func(t *testing.T) Request { return f.request(make([]byte, MaxChainLength*MaxCertSize+1)) }, nil, KindMalformed, "byte limit"},
		{"no extension", func(t *testing.T) Request { return f.request(f.chain(t, nil)) }, nil, KindMalformed, "no key attestation extension"},
		{"extension not DER", func(t *testing.T) Request { return f.request(f.chain(t, []byte{0x30, 0x80, 0, 0})) }, nil, KindMalformed, "key description"},
		{"unknown security level", func(t *testing.T) Request {
			o := good()
			o.attestLevel = 7
			return f.request(f.chain(t, o.encode(t)))
		}, nil, KindMalformed, "unknown security level"},
		{"application id twice", func(t *testing.T) Request {
			o := good()
			o.software = append(o.software, o.software[1])
			return f.request(f.chain(t, o.encode(t)))
		}, nil, KindMalformed, "appears twice"},
		{"untrusted root", func(t *testing.T) Request { return f.request(newFixture(t).chain(t, good().encode(t))) }, nil, KindUntrustedChain, "not a configured attestation root"},
		{"chain without its root", func(t *testing.T) Request {
			return f.request(concat(f.leaf(t, good().encode(t), f.inter, f.intKey), f.inter, f.inter))
		}, nil, KindUntrustedChain, "does not end in a root"},
		{"forged leaf signature", func(t *testing.T) Request {
			forger := newKey(t) // same issuer name, another key
			forged := *f.inter
			forged.PublicKey = &forger.PublicKey
			return f.request(concat(f.leaf(t, good().encode(t), &forged, forger), f.inter, f.root))
		}, nil, KindUntrustedChain, "certificate 0"},
		{"name chaining broken", func(t *testing.T) Request {
			other := issue(t, caTemplate("Another Name", fixtureNow.AddDate(-1, 0, 0), fixtureNow.AddDate(1, 0, 0)), f.root, &f.intKey.PublicKey, f.rootKey)
			return f.request(concat(f.leaf(t, good().encode(t), f.inter, f.intKey), other, f.root))
		}, nil, KindUntrustedChain, "not issued by the next"},
		{"intermediate expired", func(t *testing.T) Request {
			old := f.intermediate(t, fixtureNow.AddDate(-3, 0, 0), fixtureNow.AddDate(-1, 0, 0))
			return f.request(concat(f.leaf(t, good().encode(t), old, f.intKey), old, f.root))
		}, nil, KindUntrustedChain, "expired"},
		{"intermediate not yet valid", func(t *testing.T) Request {
			future := f.intermediate(t, fixtureNow.AddDate(0, 1, 0), fixtureNow.AddDate(2, 0, 0))
			return f.request(concat(f.leaf(t, good().encode(t), future, f.intKey), future, f.root))
		}, nil, KindUntrustedChain, "not valid before"},
		{"chain extended below the attested key", func(t *testing.T) Request {
			// A genuine attestation whose key (held by the attacker's app)
			// signs a certificate for the attacker's own key, with a copied
			// extension: the attested key is not the leaf's.
			attested := issue(t, &x509.Certificate{
				Subject: pkixName("Android Keystore Key"), NotBefore: time.Unix(0, 0), NotAfter: fixtureNow.AddDate(10, 0, 0),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
				ExtraExtensions: extensionOf(good().encode(t)),
			}, f.inter, &f.leafKey.PublicKey, f.intKey)
			attacker := newKey(t)
			fake := issue(t, &x509.Certificate{
				Subject: pkixName("Android Keystore Key"), NotBefore: time.Unix(0, 0), NotAfter: fixtureNow.AddDate(10, 0, 0),
				ExtraExtensions: extensionOf(good().encode(t)),
			}, attested, &attacker.PublicKey, f.leafKey)
			r := f.request(concat(fake, attested, f.inter, f.root))
			r.PublicKey = &attacker.PublicKey
			return r
		}, nil, KindUntrustedChain, "chain extended"},
		{"revoked intermediate", func(t *testing.T) Request { return f.request(valid) }, []AndroidOption{WithStatusList(statusListFor(t, f.inter.SerialNumber, "REVOKED"))}, KindRevoked, "REVOKED"},
		{"suspended intermediate", func(t *testing.T) Request { return f.request(valid) }, []AndroidOption{WithStatusList(statusListFor(t, f.inter.SerialNumber, "SUSPENDED"))}, KindRevoked, "SUSPENDED"},
		{"challenge of another enrollment", func(t *testing.T) Request {
			r := f.request(valid)
			r.Challenge = []byte("enrollment-challenge-0123456789ac")
			return r
		}, nil, KindChallengeMismatch, "not this enrollment's"},
		{"challenge prefix", func(t *testing.T) Request {
			r := f.request(valid)
			r.Challenge = testChallenge[:8]
			return r
		}, nil, KindChallengeMismatch, ""},
		{"no challenge bound", func(t *testing.T) Request {
			r := f.request(valid)
			r.Challenge = nil
			return r
		}, nil, KindChallengeMismatch, "no challenge"},
		{"CSR key differs", func(t *testing.T) Request {
			r := f.request(valid)
			r.PublicKey = &newKey(t).PublicKey
			return r
		}, nil, KindKeyMismatch, ""},
		{"no CSR key", func(t *testing.T) Request {
			r := f.request(valid)
			r.PublicKey = nil
			return r
		}, nil, KindKeyMismatch, ""},
		{"software attestation", func(t *testing.T) Request {
			o := good()
			o.attestLevel, o.keyMintLevel = 0, 0
			return f.request(f.chain(t, o.encode(t)))
		}, nil, KindSecurityLevel, "key held at software, the set requires tee"},
		{"keymint level below attestation level", func(t *testing.T) Request {
			o := good()
			o.attestLevel, o.keyMintLevel = 2, 0
			return f.request(f.chain(t, o.encode(t)))
		}, nil, KindSecurityLevel, "key held at software"},
		{"TEE when StrongBox is required", func(t *testing.T) Request {
			r := f.request(valid)
			r.Expect.MinSecurityLevel = SecurityStrongBox
			return r
		}, nil, KindSecurityLevel, "requires strongbox"},
		{"other package", func(t *testing.T) Request {
			r := f.request(valid)
			r.Expect.PackageNames = []string{"com.example.other"}
			return r
		}, nil, KindPackageNotAllowed, `"com.example.bank"`},
		{"no package allowed", func(t *testing.T) Request {
			r := f.request(valid)
			r.Expect.PackageNames = nil
			return r
		}, nil, KindPackageNotAllowed, ""},
		{"no application id", func(t *testing.T) Request {
			o := good()
			o.software = o.software[:1]
			return f.request(f.chain(t, o.encode(t)))
		}, nil, KindPackageNotAllowed, "no attestationApplicationId"},
		{"re-signed app", func(t *testing.T) Request {
			r := f.request(valid)
			r.Expect.SigningCertDigests = []Digest{{1}}
			return r
		}, nil, KindDigestNotAllowed, "1 attested"},
		{"no digest allowed", func(t *testing.T) Request {
			r := f.request(valid)
			r.Expect.SigningCertDigests = nil
			return r
		}, nil, KindDigestNotAllowed, ""},
	}
	seen := map[Kind]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := f.verifier(t, c.opts...).Verify(c.req(t))
			if err == nil {
				t.Fatalf("verified, want %s: %+v", c.want, res)
			}
			if KindOf(err) != c.want || !errors.Is(err, &Error{Kind: c.want}) {
				t.Fatalf("got %v (kind %q), want kind %s", err, KindOf(err), c.want)
			}
			if !strings.Contains(err.Error(), c.detail) {
				t.Errorf("error %q does not say %q", err, c.detail)
			}
			if strings.Contains(err.Error(), string(testChallenge)) {
				t.Errorf("error %q leaks the challenge", err)
			}
			seen[c.want] = true
		})
	}
	for _, k := range []Kind{KindMalformed, KindUntrustedChain, KindRevoked, KindChallengeMismatch, KindKeyMismatch, KindSecurityLevel, KindPackageNotAllowed, KindDigestNotAllowed} {
		if !seen[k] {
			t.Errorf("no case for %s", k)
		}
	}
}

func TestAndroidApplicationIDPrefersHardwareList(t *testing.T) {
	f := newFixture(t)
	o := defaultKD(t)
	// The hardware list names the real app; the software list (written by
	// the OS) names another: the hardware one decides.
	o.hardware = append(o.hardware, o.software[1])
	o.software[1] = appIDEntry(t, encAppID{PackageInfos: []encPackageInfo{{[]byte("com.evil.app"), 1}}, SignatureDigests: [][]byte{make([]byte, 32)}})
	res, err := f.verifier(t).Verify(f.request(f.chain(t, o.encode(t))))
	if err != nil {
		t.Fatal(err)
	}
	if res.AppIDSource != "hardware" || res.Package != testPackage {
		t.Errorf("package %q from %s", res.Package, res.AppIDSource)
	}
}

func TestAndroidMinimumStrongBoxAccepted(t *testing.T) {
	f := newFixture(t)
	o := defaultKD(t)
	o.attestLevel, o.keyMintLevel = 2, 2
	r := f.request(f.chain(t, o.encode(t)))
	r.Expect.MinSecurityLevel = SecurityStrongBox
	res, err := f.verifier(t).Verify(r)
	if err != nil || res.SecurityLevel != SecurityStrongBox {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestAndroidUnknownTagsAreSkipped(t *testing.T) {
	f := newFixture(t)
	o := defaultKD(t)
	// Tags from later schema versions and out of order: parsing must not
	// depend on knowing them.
	o.hardware = append([]entry{{9999, mustMarshal(t, "future")}}, o.hardware...)
	o.software = append(o.software, entry{724, mustMarshal(t, []byte{1, 2, 3})}, entry{31, mustMarshal(t, asn1Null)})
	if _, err := f.verifier(t).Verify(f.request(f.chain(t, o.encode(t)))); err != nil {
		t.Fatal(err)
	}
}

func TestAndroidDefaultRootsAreGoogles(t *testing.T) {
	f := newFixture(t)
	v, err := NewAndroidVerifier(WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(f.request(f.chain(t, defaultKD(t).encode(t))))
	if KindOf(err) != KindUntrustedChain {
		t.Fatalf("a chain to a test root verified against Google's roots: %v", err)
	}
	if _, err := NewAndroidVerifier(WithRoots([]*x509.Certificate{})); err == nil {
		t.Error("a verifier with no trust anchors was built")
	}
}

func statusListFor(t testing.TB, serial *big.Int, status string) *StatusList {
	t.Helper()
	l, err := ParseStatusList([]byte(`{"entries":{"` + serial.Text(16) + `":{"status":"` + status + `","reason":"KEY_COMPROMISE"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
