package certid

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"testing"
	"time"
)

func certWith(t *testing.T, subject pkix.Name, uris ...string) *x509.Certificate {
	t.Helper()
	// Round-trip the Subject through DER, as a parsed certificate would.
	der, err := asn1.Marshal(subject.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &rdn); err != nil {
		t.Fatal(err)
	}
	c := &x509.Certificate{}
	c.Subject.FillFromRDNSequence(&rdn)
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestBuildInfoRoundTrip(t *testing.T) {
	b := BuildInfo{ID: "42 & more", Date: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), User: "ci=bot", Host: "h?1", SDK: "1.2.3"}
	c := certWith(t, Subject("bank", "com.example.bank", b))
	got, ok, err := ParseBuildInfo(c)
	if err != nil || !ok || got != b {
		t.Fatalf("ParseBuildInfo = %+v, %v, %v; want %+v", got, ok, err, b)
	}
	if c.Subject.CommonName != "com.example.bank" || c.Subject.Organization[0] != "bank" || c.Subject.SerialNumber != "42 & more" {
		t.Errorf("subject %v", c.Subject)
	}
	if _, ok, err := ParseBuildInfo(certWith(t, pkix.Name{CommonName: "x"})); ok || err != nil {
		t.Errorf("no metadata: ok=%v err=%v", ok, err)
	}
}

func TestBuildInfoMalformed(t *testing.T) {
	for name, v := range map[string]string{
		"no id":     BuildPrefix + "user=x",
		"bad date":  BuildPrefix + "id=1&date=yesterday",
		"bad query": BuildPrefix + "id=%zz",
	} {
		c := certWith(t, pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidDescription, Value: v}}})
		if _, ok, err := ParseBuildInfo(c); !ok || err == nil {
			t.Errorf("%s: ok=%v err=%v, want an error", name, ok, err)
		}
	}
	two := BuildInfo{ID: "1"}.Encode()
	c := certWith(t, pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidDescription, Value: two}, {Type: oidDescription, Value: two}}})
	if _, _, err := ParseBuildInfo(c); err == nil {
		t.Error("two metadata attributes accepted")
	}
}

func TestIdentity(t *testing.T) {
	if s := IdentityURI("bank", "com.example.bank"); s != "mcc://bank/com.example.bank" {
		t.Fatalf("IdentityURI = %q", s)
	}
	set, app, n := Identity(certWith(t, pkix.Name{}, "https://example.com/x", "mcc://bank/com.example.bank"))
	if set != "bank" || app != "com.example.bank" || n != 1 {
		t.Errorf("Identity = %q %q %d", set, app, n)
	}
	if _, _, n := Identity(certWith(t, pkix.Name{}, "mcc://a/b", "mcc://c/d")); n != 2 {
		t.Errorf("two identities counted %d", n)
	}
	if _, _, n := Identity(certWith(t, pkix.Name{})); n != 0 {
		t.Errorf("no identity counted %d", n)
	}
}
