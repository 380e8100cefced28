package threat

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// reflectEncode is the reference encoding: encoding/json over the event's
// fields, reason data redacted, device keys spliced in before fusionSet.
// AppendJSON must produce exactly these bytes.
func reflectEncode(t testing.TB, e *Event) []byte {
	f := *(*eventFields)(e)
	if rd, ok := redactReasonData(f.ReasonData); ok {
		f.ReasonData = rd
	}
	b, err := json.Marshal(&f)
	if err != nil {
		t.Fatal(err)
	}
	var dev []byte
	for _, k := range DeviceKeys {
		if v := e.Device[k]; v != "" {
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(v)
			dev = append(append(append(append(dev, ','), kb...), ':'), vb...)
		}
	}
	at := bytes.LastIndex(b, []byte(`,"fusionSet":`))
	return append(append(append([]byte(nil), b[:at]...), dev...), b[at:]...)
}

var nastyStrings = []string{
	"", "plain", `quo"te`, `back\slash`, "ctl\x00\x01\x08\x0c\n\r\t\x1f\x7f", "<script>&amp;</script>",
	"\u2028\u2029", "emoji 😀 ünïcödé", "bad utf8 \xff\xfe end", "\xe2\x82",
}

// pemBlock goes only into reason data, the one place the encoder redacts.
const pemBlock = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func randomEvent(r *rand.Rand) *Event {
	str := func() string { return nastyStrings[r.IntN(len(nastyStrings))] }
	rd := func() string {
		if r.IntN(4) == 0 {
			return pemBlock
		}
		return str()
	}
	maybe := func() string {
		if r.IntN(3) == 0 {
			return ""
		}
		return str()
	}
	e := &Event{
		Schema: SchemaID, ID: str(),
		Time:       time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(time.FixedZone("x", 3600*(r.IntN(25)-12))),
		Name:       str(),
		ReasonCode: AllReasons[r.IntN(len(AllReasons))],
		Ref:        maybe(), CurrentThreatEventScore: r.IntN(100) - 10, ThreatEventsScore: r.IntN(1000),
		Message: maybe(), FailSafeEnforce: r.IntN(2) == 0, ExternalID: maybe(), FusedAppToken: maybe(),
		BuildDate: maybe(), BuildUser: maybe(), BuildHost: maybe(), SDKVersion: maybe(),
		FusionSet: str(), Mode: Mode(str()), Action: Action(str()), Gateway: str(),
		Node: maybe(), ClientIP: maybe(), SNI: maybe(), Host: maybe(), Method: maybe(), Path: maybe(),
	}
	if r.IntN(2) == 0 {
		e.ReasonData = map[string]any{
			"s": rd(), "n": r.IntN(10), "f": r.Float64() * 1e22, "b": true, "nil": nil,
			"list": []string{rd(), rd()}, "any": []any{rd(), 1.5, map[string]any{"k": rd()}},
			"m": map[string]string{str(): rd()}, "bytes": []byte(rd()), "d": time.Second,
			"reason": ReasonCertExpired, "i64": int64(-3), "u": uint64(7),
			"fusionSet": "inner", // must not confuse device key placement
		}
	}
	if r.IntN(2) == 0 {
		e.Device = map[string]string{}
		for _, k := range DeviceKeys {
			if r.IntN(2) == 0 {
				e.Device[k] = maybe()
			}
		}
		e.Device["notADeviceKey"] = "x"
	}
	if r.IntN(2) == 0 {
		e.Certificate = &CertInfo{
			Serial: str(), SHA256: str(), Subject: str(), Issuer: str(),
			NotBefore: time.Unix(r.Int64N(4e9), 0).UTC(), NotAfter: time.Unix(r.Int64N(4e9), r.Int64N(1e9)),
			AppID: maybe(), BuildID: maybe(),
		}
	}
	return e
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		e := randomEvent(r)
		got, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if want := reflectEncode(t, e); !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
		if strings.Contains(string(got), pemArmour) {
			t.Fatalf("event %d leaks PEM: %s", i, got)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		e := &Event{Schema: a, ID: b, Message: a, Path: b, FusionSet: a,
			ReasonData: map[string]any{a: b}, Device: map[string]string{"deviceID": a, "locale": b},
			Certificate: &CertInfo{Subject: a, Issuer: b}}
		got, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if want := reflectEncode(t, e); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

func TestAppendJSONRejectsOutOfRangeYears(t *testing.T) {
	e := &Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := e.MarshalJSON(); err == nil {
		t.Error("year 10000 encoded")
	}
	e = &Event{Certificate: &CertInfo{NotAfter: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if _, err := e.MarshalJSON(); err == nil {
		t.Error("certificate year -1 encoded")
	}
}

// redactReasonData is the reference redaction: it returns a copy of rd with PEM-bearing strings replaced, and
// true, when rd holds any; otherwise nil and false without allocating.
func redactReasonData(rd map[string]any) (map[string]any, bool) {
	if !holdsPEM(rd) {
		return nil, false
	}
	return redactValue(rd).(map[string]any), true
}

func holdsPEM(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, pemArmour)
	case []byte:
		return bytes.Contains(v, []byte(pemArmour))
	case []string:
		for _, s := range v {
			if strings.Contains(s, pemArmour) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if holdsPEM(x) {
				return true
			}
		}
	case map[string]any:
		for _, x := range v {
			if holdsPEM(x) {
				return true
			}
		}
	case map[string]string:
		for _, s := range v {
			if strings.Contains(s, pemArmour) {
				return true
			}
		}
	}
	return false
}

func redactValue(v any) any {
	if !holdsPEM(v) {
		return v
	}
	switch v := v.(type) {
	case []string:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = redactValue(s).(string)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = redactValue(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = redactValue(x)
		}
		return out
	case map[string]string:
		out := make(map[string]string, len(v))
		for k, s := range v {
			out[k] = redactValue(s).(string)
		}
		return out
	default: // string or []byte
		return RedactedPEM
	}
}
