package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
)

func TestValidate(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")

	code, out, errOut := runCLI(t, "validate", c.SetFile)
	if code != 0 || out != "ok: 1 fusion set\n" || errOut != "" {
		t.Fatalf("good file: code %d stdout %q stderr %q", code, out, errOut)
	}

	bad := filepath.Join(c.Dir, "bad.yaml")
	yaml := "fusion_sets:\n  - id: Bank\n    trusted_ca:\n      file: missing.pem\n    app_id: com.example.bank\n    mode: detection\n    threat_events: false\n"
	if err := os.WriteFile(bad, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "validate", bad)
	wantOneLineError(t, code, errOut, 1, "3 problems")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 problem lines, got %q", out)
	}
	format := regexp.MustCompile(`^` + regexp.QuoteMeta(bad) + `:\d+: fusion_sets\[0\]\.[a-z_.]+: .+$`)
	for _, l := range lines {
		if !format.MatchString(l) {
			t.Errorf("line %q is not FILE:LINE: FIELD: MSG", l)
		}
	}
	for i, w := range []string{":2: fusion_sets[0].id:", ":4: fusion_sets[0].trusted_ca.file: file not found: " + filepath.Join(c.Dir, "missing.pem"), ":7: fusion_sets[0].threat_events:"} {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}

	code, _, errOut = runCLI(t, "validate", filepath.Join(c.Dir, "nope.yaml"))
	wantOneLineError(t, code, errOut, 1, "1 problem")

	code, _, errOut = runCLI(t, "validate")
	wantOneLineError(t, code, errOut, 2, "want exactly one fusion set file")

	if code, _, _ := runCLI(t, "validate", "--help"); code != 0 {
		t.Errorf("--help exit code %d", code)
	}
}

// TestValidateGatewaySection: the gateway section is checked as `mcc xds`
// reads it, next to the fusion sets.
func TestValidateGatewaySection(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	set, err := os.ReadFile(c.SetFile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Dir, "with-gateway.yaml")
	if err := os.WriteFile(path, append(set, []byte("gateway:\n  no_such_key: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "validate", path)
	if code != 1 || !strings.Contains(errOut, "problem") {
		t.Fatalf("code %d stderr %q", code, errOut)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(l, path+":") || !strings.Contains(l, "gateway") {
			t.Errorf("line %q is not a gateway problem with FILE:LINE", l)
		}
	}
}
