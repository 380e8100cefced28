package fusion

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzFastDecodeMatchesStrict: the loader decodes from the parsed tree when
// knownFieldsOnly says the strict decoder (KnownFields) could refuse no key.
// Whenever that fast path succeeds, the strict decode must succeed too and
// give the same value; otherwise the fast path would let a problem through
// or read a file differently.
func FuzzFastDecodeMatchesStrict(f *testing.F) {
	if data, err := os.ReadFile("../examples/fusion-sets.yaml"); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"fusion_sets:\n  - id: a\n    app_id: com.example.a\n    trusted_ca: {file: ca.pem}\n    mode: defense\n",
		"fusion_sets:\n  - id: a\n    bogus: 1\n",
		"base: &b {mode: defense}\nfusion_sets:\n  - <<: *b\n    id: a\n",
		"fusion_sets:\n  - id: a\n    scores: {CERT_EXPIRED: 3}\n    fail_safe: {threshold: 5, window: 1m}\n",
		"store: memory\nsinks:\n  - type: log\nfusion_sets: []\n",
		"fusion_sets:\n  - id: a\n    id: b\n",
		"gateway:\n  listeners: [{name: x}]\nfusion_sets:\n  - {id: a, cache: {max_bytes: 1MiB}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		var doc yaml.Node
		if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil || len(doc.Content) == 0 {
			return
		}
		var fast fileYAML
		if !knownFieldsOnly(doc.Content[0], reflect.TypeOf(fast), 0) || doc.Decode(&fast) != nil {
			return
		}
		var strict fileYAML
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&strict); err != nil {
			t.Fatalf("the fast path accepted what the strict decoder refuses: %v\n%s", err, data)
		}
		// The gateway section is a yaml.Node in both: compare the rest.
		fast.Gateway, strict.Gateway = yaml.Node{}, yaml.Node{}
		if !reflect.DeepEqual(fast, strict) {
			t.Fatalf("the fast path decoded differently:\nfast   %+v\nstrict %+v\n%s", fast, strict, data)
		}
	})
}
