package threat_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

func TestEventJSONRoundTrip(t *testing.T) {
	in := threattest.Event(threat.ReasonCertRevoked)
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range threat.DeviceKeys {
		if top[k] != "sample-"+k {
			t.Errorf("device key %q at top level = %v, want %q", k, top[k], "sample-"+k)
		}
	}
	if _, ok := top["Device"]; ok {
		t.Error("Device map encoded as a nested object")
	}

	var out threat.Event
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	// time.Time round-trips through RFC 3339 without its monotonic reading.
	if !reflect.DeepEqual(normalize(t, in), normalize(t, &out)) {
		t.Errorf("round trip changed the event:\n in: %+v\nout: %+v", in, &out)
	}
	if !reflect.DeepEqual(in.Device, out.Device) {
		t.Errorf("Device = %v, want %v", out.Device, in.Device)
	}
}

// normalize re-encodes an event field by field so that DeepEqual compares
// values, not time.Time internals.
func normalize(t *testing.T, e *threat.Event) map[string]any {
	t.Helper()
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEventJSONDropsUnknownAndEmptyDeviceKeys(t *testing.T) {
	e := threattest.Event(threat.ReasonNoClientCert)
	e.Device = map[string]string{"deviceID": "d-1", "imei": "123456789012345", "osVersion": ""}
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("imei")) || bytes.Contains(b, []byte("osVersion")) {
		t.Errorf("unknown or empty device key encoded: %s", b)
	}
	if err := schematest.ValidateEventJSON(b); err != nil {
		t.Error(err)
	}
	var out threat.Event
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"deviceID": "d-1"}; !reflect.DeepEqual(out.Device, want) {
		t.Errorf("Device = %v, want %v", out.Device, want)
	}
}

func TestEventJSONEscapesDeviceValues(t *testing.T) {
	e := threattest.Event(threat.ReasonNoClientCert)
	e.Device = map[string]string{"deviceModel": "a\"b\\c\n<d>&\u2028"}
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out threat.Event
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	if out.Device["deviceModel"] != e.Device["deviceModel"] {
		t.Errorf("deviceModel = %q, want %q", out.Device["deviceModel"], e.Device["deviceModel"])
	}
}

func TestEventUnmarshalRejectsNonStringDeviceValue(t *testing.T) {
	b, err := threattest.Event(threat.ReasonNoClientCert).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(b, []byte(`"deviceID":"sample-deviceID"`), []byte(`"deviceID":42`), 1)
	if bytes.Equal(bad, b) {
		t.Fatal("test setup: deviceID not found")
	}
	var out threat.Event
	if err := json.Unmarshal(bad, &out); err == nil {
		t.Error("a numeric deviceID decoded without error")
	}
}

func TestEventsOfEveryReasonValidate(t *testing.T) {
	for _, r := range threat.AllReasons {
		for _, minimal := range []bool{false, true} {
			e := threattest.Event(r)
			if minimal {
				e = &threat.Event{
					Schema: threat.SchemaID, ID: threat.NewEventID(), Time: time.Now(),
					Name: threat.FeatureName, ReasonCode: r,
					FusionSet: "s", Mode: threat.ModeDetection, Action: threat.ActionReported, Gateway: threat.GatewayEnvoy,
				}
			}
			b, err := e.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if err := schematest.ValidateEventJSON(b); err != nil {
				t.Errorf("%s (minimal %v): %v\n%s", r, minimal, err, b)
			}
		}
	}
}

func TestMutatedEventsFailValidation(t *testing.T) {
	good, err := threattest.Event(threat.ReasonCertExpired).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		"extra field":          mutate(func(m map[string]any) { m["privateKey"] = "x" }),
		"unknown reason":       mutate(func(m map[string]any) { m["reasonCode"] = "CERT_SMELLS_FUNNY" }),
		"lowercase reason":     mutate(func(m map[string]any) { m["reasonCode"] = "cert_expired" }),
		"missing reasonCode":   mutate(func(m map[string]any) { delete(m, "reasonCode") }),
		"missing id":           mutate(func(m map[string]any) { delete(m, "id") }),
		"missing gateway":      mutate(func(m map[string]any) { delete(m, "gateway") }),
		"wrong schema":         mutate(func(m map[string]any) { m["schema"] = "mcc.threat-event/v2" }),
		"bad time":             mutate(func(m map[string]any) { m["time"] = "yesterday" }),
		"negative score":       mutate(func(m map[string]any) { m["threatEventsScore"] = -1 }),
		"fractional score":     mutate(func(m map[string]any) { m["currentThreatEventScore"] = 1.5 }),
		"score as string":      mutate(func(m map[string]any) { m["currentThreatEventScore"] = "10" }),
		"bad mode":             mutate(func(m map[string]any) { m["mode"] = "audit" }),
		"bad action":           mutate(func(m map[string]any) { m["action"] = "allowed" }),
		"bad id":               mutate(func(m map[string]any) { m["id"] = "1" }),
		"device key not str":   mutate(func(m map[string]any) { m["deviceID"] = 7 }),
		"extra cert field":     mutate(func(m map[string]any) { m["certificate"].(map[string]any)["pem"] = "x" }),
		"cert missing sha256":  mutate(func(m map[string]any) { delete(m["certificate"].(map[string]any), "sha256") }),
		"cert sha256 not hex":  mutate(func(m map[string]any) { m["certificate"].(map[string]any)["sha256"] = "AB:CD" }),
		"reasonData not obj":   mutate(func(m map[string]any) { m["reasonData"] = "x" }),
		"failSafeEnforce text": mutate(func(m map[string]any) { m["failSafeEnforce"] = "true" }),
		"not an object":        []byte(`[1,2]`),
		"trailing garbage":     append(append([]byte(nil), good...), []byte(` {}`)...),
	}
	if err := schematest.ValidateEventJSON(good); err != nil {
		t.Fatalf("unmutated event: %v", err)
	}
	for name, b := range cases {
		if err := schematest.ValidateEventJSON(b); err == nil {
			t.Errorf("%s: validated, want an error\n%s", name, b)
		}
	}
}

func TestEventNeverCarriesPEM(t *testing.T) {
	certPEM, keyPEM, info := newCert(t)
	e := threattest.Event(threat.ReasonCertUntrusted)
	e.Certificate = info
	// A careless caller passing raw material in reason data must not leak it.
	e.ReasonData = map[string]any{
		"peer":   string(certPEM),
		"key":    keyPEM,
		"chain":  []string{string(certPEM)},
		"nested": map[string]any{"list": []any{string(keyPEM), 3}},
		"struct": struct{ PEM string }{string(keyPEM)},
		"bytes":  certPEM,
		"plain":  "ok",
	}
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"PRIVATE KEY", "BEGIN CERTIFICATE", "-----BEGIN"} {
		if bytes.Contains(b, []byte(bad)) {
			t.Errorf("event JSON contains %q:\n%s", bad, b)
		}
	}
	if err := schematest.ValidateEventJSON(b); err != nil {
		t.Error(err)
	}
	// The caller's map is left as it was.
	if e.ReasonData["peer"] != string(certPEM) {
		t.Error("MarshalJSON modified the event's ReasonData")
	}
	var out threat.Event
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.ReasonData["peer"] != threat.RedactedPEM || out.ReasonData["plain"] != "ok" {
		t.Errorf("reasonData = %v", out.ReasonData)
	}
	if out.Certificate.SHA256 != info.SHA256 || !out.Certificate.NotAfter.Equal(info.NotAfter) {
		t.Errorf("certificate = %+v, want %+v", out.Certificate, info)
	}
}

func TestNewEventID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := threat.NewEventID()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("id %q is not a version 7 UUID", id)
		}
		if _, err := hex.DecodeString(strings.ReplaceAll(id, "-", "")); err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

// newCert makes a real self-signed certificate and returns its PEM, its key
// PEM and the CertInfo a gateway would report for it.
func newCert(t *testing.T) (certPEM, keyPEM []byte, info *threat.CertInfo) {
	t.Helper()
	l := testpki.SelfSigned(t, &x509.Certificate{
		SerialNumber: big.NewInt(0x1a2b3c4d),
		Subject:      pkix.Name{CommonName: "app", Organization: []string{"bank-prod"}},
		NotBefore:    time.Now().Add(-time.Hour).Truncate(time.Second),
		NotAfter:     time.Now().Add(time.Hour).Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, nil)
	cert := l.Cert
	sum := sha256.Sum256(cert.Raw)
	return l.CertPEM, l.KeyPEM,
		&threat.CertInfo{
			Serial:    cert.SerialNumber.Text(16),
			SHA256:    hex.EncodeToString(sum[:]),
			Subject:   cert.Subject.String(),
			Issuer:    cert.Issuer.String(),
			NotBefore: cert.NotBefore,
			NotAfter:  cert.NotAfter,
			AppID:     "app",
		}
}
