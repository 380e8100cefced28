package main

import (
	"os"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
)

// `mcc validate` checks the sinks section through the one loader: a good
// section passes, and each mistake is a FILE:LINE problem that never shows
// a secret.
func TestValidateSinksSection(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	set, err := os.ReadFile(c.SetFile)
	if err != nil {
		t.Fatal(err)
	}
	write := func(sinks string) {
		t.Helper()
		if err := os.WriteFile(c.SetFile, append([]byte(sinks), set...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MCC_TEST_VALIDATE_TOKEN", "Bearer hunter2")
	write(`sinks:
  - type: log
  - type: webhook
    url: https://events.example/v1
    spool_dir: spool
    header:
      Authorization: "{env.MCC_TEST_VALIDATE_TOKEN}"
  - type: redis_stream
    url: redis://127.0.0.1:6379/0
`)
	if code, out, errOut := runCLI(t, "validate", c.SetFile); code != 0 || errOut != "" {
		t.Fatalf("good sinks: code %d stdout %q stderr %q", code, out, errOut)
	}

	t.Setenv("MCC_TEST_VALIDATE_TOKEN", "Bearer hunter2\r\nX-Evil: 1")
	write(`sinks:
  - type: webhook
    url: https://events.example/v1
    spool_dir: spool
    header:
      Authorization: "{env.MCC_TEST_VALIDATE_TOKEN}"
  - type: kafka
  - type: file
    path: events.jsonl
    colour: red
`)
	code, out, errOut := runCLI(t, "validate", c.SetFile)
	wantOneLineError(t, code, errOut, 1, "3 problems")
	for _, w := range []string{
		c.SetFile + ":5: sinks[0].header: webhook sink: header Authorization: value holds a control character",
		c.SetFile + ":7: sinks[1].type: unknown sink type \"kafka\"",
		c.SetFile + ":10:",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out+errOut, "hunter2") {
		t.Errorf("validate shows the secret:\n%s%s", out, errOut)
	}
}
