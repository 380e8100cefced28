package fusion_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestSinksExamplesLoad: the `sinks:` sections the documentation shows
// (commented out in examples/fusion-sets.yaml, a yaml block in README.md)
// load as written, their secrets read from the files and variables they
// name (here moved under a temporary directory).
func TestSinksExamplesLoad(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "examples", "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{
		"examples/fusion-sets.yaml": commentedSinks(t, string(example)),
		"README.md":                 readmeSinks(t, string(readme)),
	}
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	secrets := filepath.Join(c.Dir, "run", "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"webhook-token", "siem-token", "redis-password"} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte("s3cret"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("REDIS_PASSWORD", "s3cret")
	set, err := os.ReadFile(c.SetFile)
	if err != nil {
		t.Fatal(err)
	}
	for where, sinks := range sections {
		t.Run(where, func(t *testing.T) {
			// Secrets and state under the test's directory, the rest as written.
			sinks = strings.ReplaceAll(sinks, "/run/secrets/", secrets+"/")
			sinks = strings.ReplaceAll(sinks, "/var/lib/mcc/", c.Dir+"/var/lib/mcc/")
			sinks = strings.ReplaceAll(sinks, "/var/log/mcc/", c.Dir+"/var/log/mcc/")
			path := filepath.Join(c.Dir, "with-sinks.yaml")
			if err := os.WriteFile(path, []byte(sinks+string(set)), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := fusion.LoadFile(path)
			if err != nil {
				t.Fatalf("%s's sinks section does not load:\n%s\n%v", where, sinks, err)
			}
			if len(cfg.File.Sinks) < 2 {
				t.Fatalf("%d sinks read from %s", len(cfg.File.Sinks), where)
			}
		})
	}
}

// commentedSinks uncomments the `# sinks:` block of the example file.
func commentedSinks(t *testing.T, file string) string {
	t.Helper()
	i := strings.Index(file, "\n# sinks:\n")
	if i < 0 {
		t.Fatal("examples/fusion-sets.yaml has no commented sinks: section")
	}
	var b strings.Builder
	for _, line := range strings.Split(file[i+1:], "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		b.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ") + "\n")
	}
	return b.String()
}

// readmeSinks is the README's yaml block that starts with `sinks:`.
func readmeSinks(t *testing.T, readme string) string {
	t.Helper()
	i := strings.Index(readme, "```yaml\nsinks:\n")
	if i < 0 {
		t.Fatal("README.md has no yaml block starting with sinks:")
	}
	block := readme[i+len("```yaml\n"):]
	return block[:strings.Index(block, "```")]
}
