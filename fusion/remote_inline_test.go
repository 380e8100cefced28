package fusion_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// inlineSet is a valid set whose CA is inline, indented under trusted_ca.pem.
func inlineSet(caPEM []byte, extra string) string {
	ind := "        " + strings.ReplaceAll(strings.TrimSpace(string(caPEM)), "\n", "\n        ")
	return "fusion_sets:\n" +
		"  - id: bank-prod\n" +
		"    app_id: com.example.bank\n" +
		"    mode: defense\n" +
		"    threat_events: true\n" +
		"    trusted_ca:\n" +
		"      pem: |\n" + ind + "\n" + extra
}

// TestRemoteParseInlineAccepts: a document without file references loads,
// with no path (nothing to watch) and its revocation URLs compiled.
func TestRemoteParseInlineAccepts(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	doc := inlineSet(c.CAPEM, "    revocation:\n      serials: [\"0a\"]\n      urls: [\"https://mcc.example/v1/fusion-sets/bank-prod/crl.pem\"]\n")
	cfg, err := fusion.ParseInline([]byte(doc), "bank-prod.yaml")
	if err != nil {
		t.Fatalf("valid inline document refused: %v", err)
	}
	s := cfg.Sets["bank-prod"]
	if cfg.Path != "" || s == nil || len(s.CACerts) != 1 || !s.CACerts[0].Equal(c.CACert) {
		t.Fatalf("config %+v", cfg)
	}
	if got := cfg.WatchedFiles(); len(got) != 0 {
		t.Errorf("an inline document watches %v", got)
	}
	if got := s.RevokedSerials(); len(got) != 1 || got[0] != "a" {
		t.Errorf("revoked serials %v", got)
	}
}

// TestRemoteParseInlineRefusesFiles: every key that names a file (or a
// placeholder that reads a file or the environment) is a problem at its
// line and field, and the file is not read: each path below names a file
// that exists and that Parse accepts.
func TestRemoteParseInlineRefusesFiles(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	// A relative path would resolve against the working directory: put a
	// valid CA there to show it is not read either.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), c.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("MCC_TEST_INLINE_SECRET", "hunter2")
	caOnly := "fusion_sets:\n  - id: bank-prod\n    app_id: com.example.bank\n    mode: defense\n    threat_events: true\n    trusted_ca:\n      file: %s\n"
	tests := []struct {
		name, doc string
		line      int
		field     string
	}{
		{"trusted_ca absolute", strings.Replace(caOnly, "%s", "/etc/passwd", 1), 7, "fusion_sets[0].trusted_ca.file"},
		{"trusted_ca absolute CA", strings.Replace(caOnly, "%s", c.CAFile, 1), 7, "fusion_sets[0].trusted_ca.file"},
		{"trusted_ca relative", strings.Replace(caOnly, "%s", "ca.pem", 1), 7, "fusion_sets[0].trusted_ca.file"},
		{"intermediates", inlineSet(c.CAPEM, "    intermediates:\n      file: ca.pem\n"), 0, "fusion_sets[0].intermediates.file"},
		{"revocation files", inlineSet(c.CAPEM, "    revocation:\n      files: [/etc/passwd]\n"), 0, "fusion_sets[0].revocation.files[0]"},
		{"revocation crls", inlineSet(c.CAPEM, "    revocation:\n      crls:\n        - ../crl.pem\n"), 0, "fusion_sets[0].revocation.crls[0]"},
		{"url_ca", inlineSet(c.CAPEM, "    revocation:\n      urls: [\"https://mcc.example/crl.pem\"]\n      url_ca: ca.pem\n"), 0, "fusion_sets[0].revocation.url_ca"},
		{"store file placeholder", "store: \"redis://:{file./etc/passwd}@127.0.0.1:6379/0\"\n" + inlineSet(c.CAPEM, ""), 1, "store"},
		{"store env placeholder", "store: \"redis://:{env.MCC_TEST_INLINE_SECRET}@127.0.0.1:6379/0\"\n" + inlineSet(c.CAPEM, ""), 1, "store"},
		{"sink header placeholder", "sinks:\n  - type: webhook\n    url: https://events.example/in\n    spool_dir: spool\n    header:\n      Authorization: \"Bearer {file.token}\"\n" + inlineSet(c.CAPEM, ""), 0, "sinks[0].header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fusion.ParseInline([]byte(tc.doc), "sent.yaml")
			var le *fusion.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("want a *LoadError, got %v", err)
			}
			var found bool
			for _, p := range le.Problems {
				if p.Field != tc.field {
					continue
				}
				found = true
				if p.File != "sent.yaml" || (tc.line != 0 && p.Line != tc.line) || p.Line == 0 {
					t.Errorf("problem at %s:%d, want sent.yaml:%d", p.File, p.Line, tc.line)
				}
				if !strings.Contains(p.Msg, "refused in a document parsed inline") {
					t.Errorf("message %q", p.Msg)
				}
			}
			if !found {
				t.Fatalf("no problem at %s: %v", tc.field, err)
			}
			// Nothing read leaks: neither a file's content nor the secret.
			for _, leak := range []string{"root:", "hunter2", "BEGIN CERTIFICATE-----\nMII"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error quotes %q: %v", leak, err)
				}
			}
		})
	}
	// The same documents with a base directory read their files: the
	// refusal above is ParseInline's, not a broken reference.
	ok := strings.Replace(caOnly, "%s", "ca.pem", 1)
	if _, err := fusion.Parse([]byte(ok), "sent.yaml", dir); err != nil {
		t.Fatalf("Parse refused the relative CA: %v", err)
	}
}
