package caddymod

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/mccgate/mcc/internal/testpki"
)

// -update rewrites the expected JSON of every golden file (and the
// Caddyfile half of the examples' ones) from what the adapter produces now;
// review the diff before committing it.
var updateAdapt = flag.Bool("update", false, "rewrite testdata/caddyfile_adapt/*.caddyfiletest from the adapter's output")

// adaptSeparator splits a golden file into its Caddyfile and the JSON the
// caddyfile adapter must produce, as in Caddy's own
// caddytest/integration/caddyfile_adapt.
const adaptSeparator = "\n----------\n"

// adaptExamples maps golden files to the example Caddyfile they pin: their
// Caddyfile half must be the example, byte for byte, so an edited example
// fails here until its golden file is regenerated.
var adaptExamples = map[string]string{
	"examples_defense.caddyfiletest":        "../examples/caddy/defense.Caddyfile",
	"examples_defense_events.caddyfiletest": "../examples/caddy/defense-events.Caddyfile",
	"examples_detection.caddyfiletest":      "../examples/caddy/detection.Caddyfile",
}

// adaptSecrets are values the golden files reach only through {env.*}
// placeholders. The adapter must leave placeholders as written: Caddy serves
// the adapted JSON on /config and autosaves it, so a secret expanded here
// would be published.
var adaptSecrets = map[string]string{
	"MCC_REDIS_URL":     "redis://:adapt-secret-redis@10.0.0.5:6379/0",
	"MCC_WEBHOOK_TOKEN": "adapt-secret-token",
}

// The environment variables the examples read with {$VAR:default}: unset,
// so their defaults are what the golden files pin.
var adaptExampleEnv = []string{"MCC_BIND", "MCC_PORT", "MCC_HANDSHAKE_PORT", "UPSTREAM", "CADDY_ADMIN"}

func TestAdaptCaddyfileGolden(t *testing.T) {
	goldenDir, err := filepath.Abs(filepath.Join("testdata", "caddyfile_adapt"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	examples := map[string][]byte{}
	for name, example := range adaptExamples {
		b, err := os.ReadFile(example)
		if err != nil {
			t.Fatal(err)
		}
		examples[name] = b
		if *updateAdapt {
			p := filepath.Join(goldenDir, name)
			if _, err := os.Stat(p); err != nil {
				if err := os.WriteFile(p, append(b, adaptSeparator[1:]...), 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, p)
			}
		}
	}
	sort.Strings(files)
	if len(files) < len(adaptExamples)+5 {
		t.Fatalf("found %d golden files in %s; is the directory missing?", len(files), goldenDir)
	}
	for name, example := range adaptExamples {
		if _, err := os.Stat(filepath.Join(goldenDir, name)); err != nil {
			t.Errorf("no golden file for %s: %v (run with -update)", example, err)
		}
	}

	for _, k := range adaptExampleEnv {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, v := range adaptSecrets {
		t.Setenv(k, v)
	}
	// Inline fusion sets are compiled while adapting, which reads their
	// trusted_ca: every case runs in a directory holding ca.pem, so the
	// golden files name it relatively and stay the same on every machine.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), testpki.NewCA(t, "adapt CA").CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)

	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, ok := bytes.Cut(raw, []byte(adaptSeparator))
			if !ok {
				t.Fatalf("%s: no %q line between the Caddyfile and the JSON", name, strings.TrimSpace(adaptSeparator))
			}
			caddyfile = append(caddyfile, '\n')
			if ex, isExample := examples[name]; isExample && !bytes.Equal(caddyfile, ex) {
				if !*updateAdapt {
					t.Fatalf("%s: the Caddyfile is not %s; run go test ./caddymod -run Adapt -update", name, adaptExamples[name])
				}
				caddyfile = ex
			}
			got := adaptCaddyfile(t, name, caddyfile)
			for env, secret := range adaptSecrets {
				if bytes.Contains(got, []byte(secret)) {
					t.Errorf("the adapted config holds the value of %s: placeholders must stay as written", env)
				}
			}
			if *updateAdapt {
				out := append(bytes.TrimSuffix(caddyfile, []byte("\n")), adaptSeparator...)
				if err := os.WriteFile(path, append(out, got...), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: adapted JSON differs from the golden file (run go test ./caddymod -run Adapt -update and review the diff)\n got:\n%s", name, got)
			}
		})
	}
}

// adaptCaddyfile runs Caddy's caddyfile adapter, refuses warnings, and
// returns the JSON indented with tabs and ending in a newline.
func adaptCaddyfile(t *testing.T, name string, caddyfile []byte) []byte {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("no caddyfile adapter registered")
	}
	out, warnings, err := adapter.Adapt(caddyfile, map[string]any{"filename": name})
	if err != nil {
		t.Fatalf("adapting %s: %v", name, err)
	}
	for _, w := range warnings {
		t.Errorf("adapting %s: warning: %s", name, w.String())
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatalf("indenting %s: %v", name, err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// The golden comparison must notice a change: one option more in a golden
// file's Caddyfile changes the adapted JSON.
func TestAdaptGoldenNoticesAChange(t *testing.T) {
	base := []byte("{\n\tmcc {\n\t\tfusion_sets fusion-sets.yaml\n\t}\n}\n")
	changed := []byte("{\n\tmcc {\n\t\tfusion_sets fusion-sets.yaml\n\t\tnode edge-1\n\t}\n}\n")
	a, b := adaptCaddyfile(t, "base", base), adaptCaddyfile(t, "changed", changed)
	if bytes.Equal(a, b) {
		t.Fatalf("adding `node edge-1` did not change the adapted JSON:\n%s", a)
	}
	if !bytes.Contains(b, []byte(`"node": "edge-1"`)) {
		t.Fatalf("adapted JSON lacks the node:\n%s", b)
	}
}

// The secret check can fail: {$VAR} is the Caddyfile's own substitution,
// done while adapting, so a secret written that way is in the JSON.
func TestAdaptSecretCheckSeesAdaptTimeSubstitution(t *testing.T) {
	t.Setenv("MCC_REDIS_URL", adaptSecrets["MCC_REDIS_URL"])
	got := adaptCaddyfile(t, "substituted", []byte("{\n\tmcc {\n\t\tfusion_sets fusion-sets.yaml\n\t\tstore redis {$MCC_REDIS_URL}\n\t}\n}\n"))
	if !bytes.Contains(got, []byte(adaptSecrets["MCC_REDIS_URL"])) {
		t.Fatalf("{$MCC_REDIS_URL} was not substituted while adapting:\n%s", got)
	}
}
