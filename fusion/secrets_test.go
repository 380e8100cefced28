package fusion_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestStorePlaceholders: the store URL's password need not be written in
// the fusion set file: {env.NAME} and {file.PATH} (relative to the file,
// trailing newline dropped) are expanded at load. The loaded Config keeps
// the placeholder for anything that prints or serves it; errors name the
// key, the line and the placeholder, never the secret.
func TestStorePlaceholders(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	const secret = "s3cr3t-Pa55"
	t.Setenv("MCC_C2_REDIS_PASSWORD", secret)
	if err := os.MkdirAll(filepath.Join(c.Dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "secrets", "redis-url"), []byte("rediss://mcc:"+secret+"@redis.internal:6380/2\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ store, want string }{
		{"redis://:{env.MCC_C2_REDIS_PASSWORD}@127.0.0.1:6379/0", "redis://:" + secret + "@127.0.0.1:6379/0"},
		{"\"{file.secrets/redis-url}\"", "rediss://mcc:" + secret + "@redis.internal:6380/2"},
		{"memory", "memory"},
	} {
		cfg, err := loadString(t, c.Dir, "store: "+tc.store+"\n"+validSet)
		if err != nil {
			t.Fatalf("store %s: %v", tc.store, err)
		}
		if got := cfg.StoreURL(); got != tc.want {
			t.Fatalf("StoreURL() = %q, want %q", got, tc.want)
		}
		if strings.Contains(tc.store, "{") {
			if cfg.File.Store != strings.Trim(tc.store, `"`) {
				t.Fatalf("File.Store = %q, want the placeholder as written", cfg.File.Store)
			}
			js, err := json.Marshal(cfg.File)
			if err != nil {
				t.Fatal(err)
			}
			for what, dump := range map[string]string{"json": string(js), "%+v": fmt.Sprintf("%+v", *cfg), "%#v": fmt.Sprintf("%#v", *cfg)} {
				if strings.Contains(dump, secret) {
					t.Fatalf("the %s dump of the loaded config holds the secret", what)
				}
			}
		}
	}

	tests := []struct {
		name, store string
		want        wantProblem
	}{
		{"unset variable", "redis://:{env.MCC_C2_UNSET}@127.0.0.1:6379/0",
			wantProblem{1, "store", "placeholder {env.MCC_C2_UNSET}: environment variable MCC_C2_UNSET is not set"}},
		{"missing file", "\"{file.secrets/nope}\"",
			wantProblem{1, "store", "placeholder {file.secrets/nope}: file not found: " + filepath.Join(c.Dir, "secrets", "nope")}},
		{"empty name", "\"{env.}\"", wantProblem{1, "store", "names nothing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, c, "store: "+tc.store+"\n"+validSet, []wantProblem{tc.want})
		})
	}

	// A secret that expands to something that is not a store URL: the
	// message says so without the value.
	t.Setenv("MCC_C2_BAD_URL", "mongodb://admin:"+secret+"@db")
	_, err := loadString(t, c.Dir, "store: \"{env.MCC_C2_BAD_URL}\"\n"+validSet)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), `store "{env.MCC_C2_BAD_URL}" is neither "memory" nor a redis:// or rediss:// URL once its placeholders are expanded`) {
		t.Fatalf("bad expanded store: %v", err)
	}
	// Without placeholders, a bad store URL's password is redacted.
	_, err = loadString(t, c.Dir, "store: mongodb://admin:"+secret+"@db\n"+validSet)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "mongodb://admin:xxxxx@db") {
		t.Fatalf("bad literal store: %v", err)
	}
}
