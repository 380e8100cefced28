package api

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzJSONScan holds the ingest route's scanners to encoding/json: for
// valid JSON, objectMembers finds exactly the members json.Unmarshal does
// (same keys, same value bytes) and compactJSON equals json.Compact; for
// anything else, they refuse or answer without panicking.
func FuzzJSONScan(f *testing.F) {
	for _, seed := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":"x\"y","b":{"c":[1,{"d":"}"}]},"e":null}`,
		"{\n  \"id\": \"x\",\t\"n\": -1.5e3 }", `{"a\u0062":true,"k":"\\"}`, `{"a":1,"a":2}`,
		`[]`, `"s"`, `{"a":}`, `{"a" 1}`, `{"a":1,}`, `{"a":"unterminated}`, `{"a":[1,2}`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		members, ok := objectMembers(raw, nil)
		doc, cerr := compactJSON(raw)
		if !json.Valid(raw) || !utf8.Valid(raw) {
			return // no panic is the property (the route refuses invalid UTF-8 first)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, raw); err != nil || cerr != nil || doc != compact.String() {
			t.Fatalf("compactJSON(%q) = %q, %v; json.Compact %q", raw, doc, cerr, compact.String())
		}
		var obj map[string]json.RawMessage
		isObject := json.Unmarshal(raw, &obj) == nil && bytes.TrimSpace(raw)[0] == '{'
		if ok != isObject {
			t.Fatalf("objectMembers(%q) ok=%v, encoding/json object=%v", raw, ok, isObject)
		}
		if !ok {
			return
		}
		last := map[string]json.RawMessage{}
		for _, m := range members {
			last[m.key] = m.val
		}
		if len(last) != len(obj) {
			t.Fatalf("objectMembers(%q) keys %d, encoding/json %d", raw, len(last), len(obj))
		}
		for k, v := range obj {
			if !bytes.Equal(last[k], v) {
				t.Fatalf("objectMembers(%q)[%q] = %q, encoding/json %q", raw, k, last[k], v)
			}
		}
	})
}
