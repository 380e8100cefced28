package attestation

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

func validPolicy(mode Mode) Policy {
	return Policy{Mode: mode, Expect: testExpect()}
}

func TestPolicyValidate(t *testing.T) {
	for _, p := range []Policy{{}, {Mode: ModeOff}, validPolicy(ModeRequired), validPolicy(ModeOptional)} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := map[string]struct {
		p    Policy
		want string
	}{
		"unknown mode":      {Policy{Mode: "sometimes"}, "want required, optional or off"},
		"no packages":       {Policy{Mode: ModeRequired, Expect: Expectations{SigningCertDigests: []Digest{testDigest}}}, "at least one package"},
		"no digests":        {Policy{Mode: ModeOptional, Expect: Expectations{PackageNames: []string{testPackage}}}, "at least one SHA-256"},
		"bad package":       {Policy{Mode: ModeRequired, Expect: Expectations{PackageNames: []string{"bank\n"}, SigningCertDigests: []Digest{testDigest}}}, `packages[0]: "bank\n"`},
		"one-segment name":  {Policy{Mode: ModeRequired, Expect: Expectations{PackageNames: []string{"bank"}, SigningCertDigests: []Digest{testDigest}}}, "not an Android package name"},
		"software minimum":  {Policy{Mode: ModeRequired, Expect: Expectations{PackageNames: []string{testPackage}, SigningCertDigests: []Digest{testDigest}, MinSecurityLevel: SecuritySoftware}}, "use tee or strongbox"},
		"unknown minimum":   {Policy{Mode: ModeRequired, Expect: Expectations{PackageNames: []string{testPackage}, SigningCertDigests: []Digest{testDigest}, MinSecurityLevel: "hsm"}}, "want tee or strongbox"},
		"long package name": {Policy{Mode: ModeRequired, Expect: Expectations{PackageNames: []string{"a." + strings.Repeat("b", 300)}, SigningCertDigests: []Digest{testDigest}}}, "packages[0]"},
	}
	for name, c := range bad {
		err := c.p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
	// Every problem is reported at once.
	err := Policy{Mode: ModeRequired}.Validate()
	if err == nil || !strings.Contains(err.Error(), "package") || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("got %v", err)
	}
}

func TestPolicyCheckModes(t *testing.T) {
	f := newFixture(t)
	verifiers := []Verifier{f.verifier(t)}
	good := &Evidence{Format: FormatAndroidKey, Data: f.chain(t, defaultKD(t).encode(t))}
	forged := &Evidence{Format: FormatAndroidKey, Data: newFixture(t).chain(t, defaultKD(t).encode(t))}
	key := &f.leafKey.PublicKey

	cases := []struct {
		name     string
		mode     Mode
		ev       *Evidence
		want     Kind
		verified bool
	}{
		{"off ignores a forged attestation", ModeOff, forged, "", false},
		{"zero mode is off", "", forged, "", false},
		{"optional without evidence", ModeOptional, nil, "", false},
		{"optional with empty evidence", ModeOptional, &Evidence{Format: FormatAndroidKey}, "", false},
		{"optional verifies what is sent", ModeOptional, good, "", true},
		{"optional refuses a forged attestation", ModeOptional, forged, KindUntrustedChain, false},
		{"required without evidence", ModeRequired, nil, KindMissing, false},
		{"required verifies", ModeRequired, good, "", true},
		{"required with an unknown format", ModeRequired, &Evidence{Format: "apple-appattest", Data: []byte{1}}, KindUnsupportedFormat, false},
		{"invalid mode fails closed", "maybe", good, KindMalformed, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := validPolicy(c.mode)
			res, err := p.Check(verifiers, c.ev, testChallenge, key)
			if KindOf(err) != c.want || (c.want == "" && err != nil) {
				t.Fatalf("got %v, want kind %q", err, c.want)
			}
			if (res != nil) != c.verified {
				t.Fatalf("result %+v, verified want %v", res, c.verified)
			}
		})
	}
}

func TestDigestText(t *testing.T) {
	sum := sha256.Sum256([]byte("signing certificate"))
	d := Digest(sum)
	for _, s := range []string{d.String(), strings.ToUpper(d.String()), colonHex(d)} {
		got, err := ParseDigest(s)
		if err != nil || got != d {
			t.Errorf("ParseDigest(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "abcd", d.String() + "00", strings.Repeat("zz", 32)} {
		if _, err := ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) accepted", s)
		}
	}
	// Config formats get the text form through encoding.TextUnmarshaler.
	var e struct{ Digests []Digest }
	if err := json.Unmarshal([]byte(`{"Digests":["`+colonHex(d)+`"]}`), &e); err != nil || len(e.Digests) != 1 || e.Digests[0] != d {
		t.Fatalf("json: %v %v", e, err)
	}
	out, err := json.Marshal(e)
	if err != nil || !strings.Contains(string(out), d.String()) {
		t.Errorf("json out %s, %v", out, err)
	}
}

func colonHex(d Digest) string {
	h := strings.ToUpper(d.String())
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestStatusList(t *testing.T) {
	l, err := ParseStatusList([]byte(`{"entries":{
		"2c8cdddfd5e03bfc": {"status":"REVOKED","expires":"2020-11-13","reason":"KEY_COMPROMISE"},
		"00C8966FCB2FBE32": {"status":"SUSPENDED","reason":"SOFTWARE_FLAW"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := l.Status("2c8cdddfd5e03bfc"); !ok || s != "REVOKED" {
		t.Errorf("got %q %v", s, ok)
	}
	// Leading zeros and case do not hide a serial.
	if s, ok := l.Status("c8966fcb2fbe32"); !ok || s != "SUSPENDED" {
		t.Errorf("got %q %v", s, ok)
	}
	if _, ok := l.Status("1"); ok || l.Len() != 2 {
		t.Error("unlisted serial found")
	}
	var nilList *StatusList
	if _, ok := nilList.Status("1"); ok {
		t.Error("nil list lists")
	}
	for name, doc := range map[string]string{
		"not json":       `{`,
		"no entries":     `{}`,
		"bad serial":     `{"entries":{"xyz":{"status":"REVOKED"}}}`,
		"negative":       `{"entries":{"-1":{"status":"REVOKED"}}}`,
		"over the limit": `{"entries":{}}` + strings.Repeat(" ", MaxStatusListSize),
	} {
		if _, err := ParseStatusList([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestGoogleRootsEmbedded pins the embedded roots to the fingerprints in
// roots/README.md, so an edited file fails here.
func TestGoogleRootsEmbedded(t *testing.T) {
	want := map[string]string{
		"cedb1cb6dc896ae5ec797348bce9286753c2b38ee71ce0fbe34a9a1248800dfc": "SERIALNUMBER=f92009e853b6b045",
		"6d9db4ce6c5c0b293166d08986e05774a8776ceb525d9e4329520de12ba4bcc0": "CN=Key Attestation CA1,OU=Android,O=Google LLC,C=US",
	}
	roots := GoogleRoots()
	if len(roots) != len(want) {
		t.Fatalf("%d roots embedded, want %d", len(roots), len(want))
	}
	for _, r := range roots {
		fp := sha256.Sum256(r.Raw)
		subject, ok := want[Digest(fp).String()]
		if !ok || r.Subject.String() != subject || !r.IsCA {
			t.Errorf("unexpected root %s (%s)", r.Subject, Digest(fp))
		}
	}
	if _, err := ParseRootsPEM([]byte("no pem here")); err == nil {
		t.Error("empty roots file accepted")
	}
	own, err := ParseRootsPEM(pemOf(newFixture(t).root))
	if err != nil || len(own) != 1 {
		t.Errorf("own root: %v", err)
	}
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
