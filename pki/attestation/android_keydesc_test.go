package attestation

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"strings"
	"testing"
)

// handWrittenKD is a KeyDescription written byte by byte from the schema (the
// comments are the decoding), so the parser and the test encoder are each
// checked against DER that neither produced.
var handWrittenKD = mustHex(strings.Join([]string{
	"3073",         // KeyDescription SEQUENCE, 115 bytes
	"020200C8",     // attestationVersion 200
	"0A0101",       // attestationSecurityLevel TrustedEnvironment
	"020200C8",     // keyMintVersion 200
	"0A0102",       // keyMintSecurityLevel StrongBox
	"040463686174", // attestationChallenge "chat"
	"0400",         // uniqueId ""
	"3038",         // softwareEnforced SEQUENCE, 56 bytes
	"BF854534",     //   [709] EXPLICIT, 52 bytes (709 = 0x85 0x45 in base 128)
	"0432",         //     OCTET STRING, 50 bytes: AttestationApplicationId
	"3030",         //       SEQUENCE, 48 bytes
	"310A",         //         package_infos SET, 10 bytes
	"3008",         //           AttestationPackageInfo SEQUENCE
	"0403612E62",   //             package_name "a.b"
	"020107",       //             version 7
	"3122",         //         signature_digests SET, 34 bytes
	"0420" + strings.Repeat("11", 32),
	"3021",           // hardwareEnforced SEQUENCE, 33 bytes
	"A1053103020102", //   [1] purpose SET { 2 }
	"BF854010",       //   [704] EXPLICIT, 16 bytes
	"300E",           //     RootOfTrust SEQUENCE, 14 bytes
	"0402AABB",       //       verifiedBootKey
	"0101FF",         //       deviceLocked TRUE
	"0A0100",         //       verifiedBootState Verified
	"0402CCDD",       //       verifiedBootHash
	"BF8767020500",   //   [999] EXPLICIT NULL: a tag this package does not know
}, ""))

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestKeyDescriptionDecodesHandWrittenDER(t *testing.T) {
	kd, err := ParseAndroidKeyDescription(handWrittenKD)
	if err != nil {
		t.Fatal(err)
	}
	if kd.AttestationVersion != 200 || kd.KeyMintVersion != 200 || kd.AttestationSecurityLevel != SecurityTEE || kd.KeyMintSecurityLevel != SecurityStrongBox {
		t.Errorf("versions and levels: %+v", kd)
	}
	if string(kd.AttestationChallenge) != "chat" || len(kd.UniqueID) != 0 {
		t.Errorf("challenge %q unique id %x", kd.AttestationChallenge, kd.UniqueID)
	}
	id := kd.Software.AppID
	if id == nil || len(id.Packages) != 1 || id.Packages[0] != (PackageInfo{"a.b", 7}) ||
		len(id.SignatureDigests) != 1 || !bytes.Equal(id.SignatureDigests[0], bytes.Repeat([]byte{0x11}, 32)) {
		t.Errorf("application id %+v", id)
	}
	rot := kd.Hardware.RootOfTrust
	if rot == nil || !bytes.Equal(rot.VerifiedBootKey, []byte{0xAA, 0xBB}) || !rot.DeviceLocked ||
		rot.VerifiedBootState != BootVerified || !bytes.Equal(rot.VerifiedBootHash, []byte{0xCC, 0xDD}) {
		t.Errorf("root of trust %+v", rot)
	}
	if kd.Hardware.AppID != nil || kd.Software.RootOfTrust != nil {
		t.Error("fields appeared in the wrong list")
	}
	if got, want := kd.Hardware.Tags, []int{1, 704, 999}; !equalInts(got, want) {
		t.Errorf("hardware tags %v, want %v", got, want)
	}
}

func TestKeyDescriptionEncoderMatchesHandWrittenDER(t *testing.T) {
	got := mustMarshal(t, encKeyDescription{
		AttestationVersion:       200,
		AttestationSecurityLevel: 1,
		KeyMintVersion:           200,
		KeyMintSecurityLevel:     2,
		AttestationChallenge:     []byte("chat"),
		UniqueID:                 []byte{},
		SoftwareEnforced: authList(t, appIDEntry(t, encAppID{
			PackageInfos:     []encPackageInfo{{[]byte("a.b"), 7}},
			SignatureDigests: [][]byte{bytes.Repeat([]byte{0x11}, 32)},
		})),
		HardwareEnforced: authList(t,
			entry{1, mustMarshal(t, []int{2}, "set")},
			rootOfTrustEntry(t, encRootOfTrust{[]byte{0xAA, 0xBB}, true, 0, []byte{0xCC, 0xDD}}),
			entry{999, mustMarshal(t, asn1Null)},
		),
	})
	if !bytes.Equal(got, handWrittenKD) {
		t.Errorf("test encoder differs from the schema:\n got %X\nwant %X", got, handWrittenKD)
	}
}

func TestKeyDescriptionRefusesWhatChecksNeed(t *testing.T) {
	cases := map[string][]byte{
		"trailing data":       append(bytes.Clone(handWrittenKD), 0x05, 0x00),
		"truncated":           handWrittenKD[:len(handWrittenKD)-3],
		"untagged list entry": replace(handWrittenKD, "BF8767020500", "3002"+"0500"),
		"bad boot state":      replace(handWrittenKD, "0A0100", "0A0109"),
		"boolean not boolean": replace(handWrittenKD, "0101FF", "0201FF"),
		"security level 3":    replace(handWrittenKD, "0A0102", "0A0103"),
		"app id not octets":   replace(handWrittenKD, "BF8545340432", "BF8545343032"),
		"over the size limit": make([]byte, MaxKeyDescriptionSize+1),
	}
	for name, der := range cases {
		if _, err := ParseAndroidKeyDescription(der); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// replace swaps one hex fragment of der, which must occur exactly once.
func replace(der []byte, from, to string) []byte {
	h := strings.ToUpper(hex.EncodeToString(der))
	if strings.Count(h, from) != 1 {
		panic("fragment " + from + " is not unique")
	}
	return mustHex(strings.Replace(h, from, to, 1))
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// extensionValue returns the KeyDescription of a sample chain's leaf.
func extensionValue(t testing.TB, name string) []byte {
	t.Helper()
	_, certs := sampleChain(t, name)
	for _, e := range certs[0].Extensions {
		if e.Id.Equal(OIDAndroidKeyDescription) {
			return e.Value
		}
	}
	t.Fatalf("%s: no key description", name)
	return nil
}

func TestKeyDescriptionRealDeviceQuirks(t *testing.T) {
	// This device encodes deviceLocked TRUE as 0x01 (BER, not DER); Google's
	// verifier reads it as true, and so does this parser.
	kd, err := ParseAndroidKeyDescription(extensionValue(t, "invalid_malformed_rot_device_locked"))
	if err != nil {
		t.Fatal(err)
	}
	if kd.Hardware.RootOfTrust == nil || !kd.Hardware.RootOfTrust.DeviceLocked {
		t.Errorf("root of trust %+v", kd.Hardware.RootOfTrust)
	}
	// Tags out of the schema's ascending order still parse; only the
	// fields the checks use matter.
	kd, err = ParseAndroidKeyDescription(extensionValue(t, "invalid_tags_not_in_ascending_order"))
	if err != nil {
		t.Fatal(err)
	}
	if kd.Software.AppID == nil && kd.Hardware.AppID == nil {
		t.Error("no application id parsed")
	}
}

// FuzzAndroidKeyDescription feeds the parser what an attacker controls: the
// extension bytes. It must never panic, and what it accepts must be
// self-consistent.
func FuzzAndroidKeyDescription(f *testing.F) {
	f.Add(handWrittenKD)
	for _, name := range []string{"tegu_sdk36_TEE_EC_2026_ROOT", "akita_sdk34_TEE_EC_NONE", "sony-xperia10-iii_sdk33_TEE_EC", "invalid_malformed_rot_device_locked", "invalid_tags_not_in_ascending_order"} {
		f.Add(extensionValue(f, name))
	}
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, der []byte) {
		kd, err := ParseAndroidKeyDescription(der)
		if err != nil {
			return
		}
		for _, l := range []SecurityLevel{kd.AttestationSecurityLevel, kd.KeyMintSecurityLevel} {
			if l.rank() == 0 {
				t.Fatalf("accepted unknown level %q", l)
			}
		}
		if rot := kd.Hardware.RootOfTrust; rot != nil && rot.VerifiedBootState == "" {
			t.Fatal("root of trust without a state")
		}
		// Whatever parsed re-encodes without error: the types are sound.
		if _, err := asn1.Marshal(kd.AttestationChallenge); err != nil {
			t.Fatal(err)
		}
	})
}
