package certid

import (
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"
)

func TestInstallInfoRoundTrip(t *testing.T) {
	b := BuildInfo{ID: "b-7", Date: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), User: "ci", Host: "h", SDK: "1.2", Kind: KindInstall, InstallID: "3f2b8c1e-6a4d-4f7e-9b1a-2c5d8e9f0a1b"}
	enc := b.Encode()
	if !strings.HasPrefix(enc, InstallPrefix) || !strings.Contains(enc, "install="+b.InstallID) {
		t.Fatalf("Encode = %q", enc)
	}
	got, ok, err := ParseBuildInfo(certWith(t, Subject("bank", "com.example.bank", b)))
	if err != nil || !ok || got != b {
		t.Fatalf("ParseBuildInfo = %+v, %v, %v; want %+v", got, ok, err, b)
	}
	if got.Kind.String() != "install" || KindBuild.String() != "build" {
		t.Errorf("Kind strings %q %q", got.Kind, KindBuild)
	}
}

func TestInstallInfoRefusals(t *testing.T) {
	desc := func(vals ...string) pkix.Name {
		n := pkix.Name{}
		for _, v := range vals {
			n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: oidDescription, Value: v})
		}
		return n
	}
	for name, subj := range map[string]pkix.Name{
		"no install id":   desc(InstallPrefix + "id=b"),
		"bad install id":  desc(InstallPrefix + "id=b&install=a%2Fb"),
		"long install id": desc(InstallPrefix + "id=b&install=" + strings.Repeat("a", MaxInstallIDLen+1)),
		"two kinds":       desc(BuildPrefix+"id=b", InstallPrefix+"id=b&install=i"),
		"no build id":     desc(InstallPrefix + "install=i"),
	} {
		if _, ok, err := ParseBuildInfo(certWith(t, subj)); !ok || err == nil {
			t.Errorf("%s: ok %v err %v; want a malformed-metadata error", name, ok, err)
		}
	}
	// A build certificate keeps parsing as before: an install key in it is
	// not an install id.
	got, ok, err := ParseBuildInfo(certWith(t, desc(BuildPrefix+"id=b&install=i")))
	if err != nil || !ok || got != (BuildInfo{ID: "b"}) {
		t.Errorf("build with install key = %+v, %v, %v", got, ok, err)
	}
}

func TestCheckInstallID(t *testing.T) {
	for _, id := range []string{"a", "3f2b8c1e-6a4d-4f7e-9b1a-2c5d8e9f0a1b", "A.b_c-9", strings.Repeat("z", MaxInstallIDLen)} {
		if err := CheckInstallID(id); err != nil {
			t.Errorf("CheckInstallID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "a b", "a/b", "a?b", "é", strings.Repeat("z", MaxInstallIDLen+1)} {
		if CheckInstallID(id) == nil {
			t.Errorf("CheckInstallID(%q) accepted", id)
		}
	}
}
