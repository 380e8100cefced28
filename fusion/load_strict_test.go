package fusion_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestLoadStrictScalars: one rule for every field, as issue 10 asks:
// "yes", "on" and "true" in quotes were taken for true while "100" was
// refused for an integer. Strings are not booleans, and numbers with a
// fraction are not integers; a negative threshold says it must be positive.
func TestLoadStrictScalars(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	events := func(v string) string { return strings.Replace(validSet, "threat_events: true", "threat_events: "+v, 1) }
	tests := []struct {
		name string
		yaml string
		want []wantProblem
	}{
		{"quoted yes", events(`"yes"`), []wantProblem{{7, "fusion_sets[0].threat_events", `wrong type: string "yes", want true or false`}}},
		{"bare yes", events("yes"), []wantProblem{{7, "fusion_sets[0].threat_events", `wrong type: string "yes", want true or false`}}},
		{"on", events("on"), []wantProblem{{7, "fusion_sets[0].threat_events", `string "on"`}}},
		{"quoted true", events(`"true"`), []wantProblem{{7, "fusion_sets[0].threat_events", "want true or false"}}},
		{"one", events("1"), []wantProblem{{7, "fusion_sets[0].threat_events", "want true or false"}}},
		{"eku as string", validSet + "    crypto:\n      require_client_auth_eku: \"no\"\n",
			[]wantProblem{{9, "fusion_sets[0].crypto.require_client_auth_eku", `string "no", want true or false`}}},
		{"quoted threshold", validSet + "    fail_safe:\n      threshold: \"100\"\n",
			[]wantProblem{{9, "fusion_sets[0].fail_safe.threshold", "want an integer"}}},
		{"fractional threshold", validSet + "    fail_safe:\n      threshold: 100.0\n",
			[]wantProblem{{9, "fusion_sets[0].fail_safe.threshold", `wrong type: number "100.0", want an integer`}}},
		{"negative threshold", validSet + "    fail_safe:\n      threshold: -5\n",
			[]wantProblem{{9, "fusion_sets[0].fail_safe.threshold", "must be a positive score (the running score at which the client is blocked), got -5"}}},
		{"zero threshold", validSet + "    fail_safe:\n      threshold: 0\n",
			[]wantProblem{{9, "fusion_sets[0].fail_safe.threshold", "must be a positive score"}}},
		{"missing threshold", validSet + "    fail_safe:\n      window: 5m\n",
			[]wantProblem{{8, "fusion_sets[0].fail_safe.threshold", "required"}}},
		{"cache budget too small", validSet + "    cache:\n      max_bytes: 1KiB\n",
			[]wantProblem{{9, "fusion_sets[0].cache.max_bytes", "1KiB is out of range (256KiB-4GiB)"}}},
		{"cache budget not a size", validSet + "    cache:\n      max_bytes: lots\n",
			[]wantProblem{{9, "fusion_sets[0].cache.max_bytes", "invalid size"}}},
		{"cache budget boolean", validSet + "    cache:\n      max_bytes: true\n",
			[]wantProblem{{9, "fusion_sets[0].cache.max_bytes", "size must be"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, c, tc.yaml, tc.want)
		})
	}
	// The boolean forms YAML itself defines stay accepted.
	for _, v := range []string{"true", "True", "TRUE"} {
		if _, err := loadString(t, c.Dir, events(v)); err != nil {
			t.Errorf("threat_events: %s refused: %v", v, err)
		}
	}
	cfg, err := loadString(t, c.Dir, validSet+"    cache:\n      max_bytes: 2MiB\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sets["bank-prod"].CacheMaxBytes; got != 2<<20 {
		t.Fatalf("cache.max_bytes 2MiB = %d", got)
	}
	cfg, err = loadString(t, c.Dir, validSet)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sets["bank-prod"].CacheMaxBytes; got != fusion.DefaultCacheMaxBytes {
		t.Fatalf("default cache budget %d", got)
	}
}

// TestLoadSyntaxErrorLine: the YAML parser names the line where the list
// or mapping around a mistake starts (line 1 for a key indented wrong on
// line 5); the problem now names the line that is wrong.
func TestLoadSyntaxErrorLine(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	tests := []struct {
		name string
		yaml string
		line int
	}{
		{"key indented too little", "fusion_sets:\n  - id: bank-prod\n    trusted_ca:\n      file: ca.pem\n   app_id: x\n    mode: defense\n", 5},
		{"key out of the set", validSet + "  mode: defense\n", 8},
		{"list item inside a mapping", "fusion_sets:\n  - id: bank-prod\n    app_id: x\n    mode: defense\n    - threat_events: true\n", 5},
		{"tab indentation", "fusion_sets:\n  - id: bank-prod\n    app_id: x\n\tmode: defense\n", 4},
		{"unclosed quote", "fusion_sets:\n  - id: bank-prod\n    trusted_ca:\n      file: ca.pem\n    app_id: \"x\n    mode: defense\n", 5},
		{"colon in a value", "fusion_sets:\n  - id: bank-prod\n    app_id: x\n    mode: defense\n    message: a: b\n", 5},
		{"unclosed bracket", "fusion_sets:\n  - id: [\n", 2},
		{"unclosed bracket, closed later", "fusion_sets:\n  - id: bank-prod\n    spki_pins: [\n      a,\n      b]\n    mode: defense\n   app_id: x\n", 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, c, tc.yaml, []wantProblem{{tc.line, "", "invalid YAML"}})
		})
	}
}

func checkProblems(t *testing.T, c *fusiontest.Corpus, yaml string, want []wantProblem) {
	t.Helper()
	cfg, err := loadString(t, c.Dir, yaml)
	if err == nil {
		t.Fatalf("accepted: %v", cfg.IDs)
	}
	var le *fusion.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error %T %v, want *LoadError", err, err)
	}
	if len(le.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(le.Problems), len(want), err)
	}
	for i, w := range want {
		p := le.Problems[i]
		if p.Line != w.line || p.Field != w.field || !strings.Contains(p.Msg, w.msg) {
			t.Errorf("problem %d = %q\nwant line %d field %q msg containing %q", i, p.Error(), w.line, w.field, w.msg)
		}
		if !strings.HasPrefix(p.Error(), filepath.Join(c.Dir, "sets.yaml")+":") {
			t.Errorf("problem %q does not start with FILE:LINE", p.Error())
		}
	}
}
