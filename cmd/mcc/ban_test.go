package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// TestBanListLift is issue 10 point 9: a gateway bans a client's /64 in the
// shared Redis; `mcc ban list` shows it, `mcc ban lift --address` with any
// address of that /64 lifts it, and the gateway lets the client in again.
func TestBanListLift(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	st, err := redisstore.New(ctx, srv.URL(), redisstore.Options{DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	setFile := c.WriteSetFile(t, "fs.yaml", func(s *fusion.SetConfig) {
		s.FailSafe = &fusion.FailSafe{Threshold: 20, Window: fusion.Duration(time.Minute), Duration: fusion.Duration(time.Hour)}
		s.FailSafe.Subjects = []string{"address"}
	})
	// The store key as a gateway reads it: the URL from the environment.
	t.Setenv("MCC_TEST_REDIS", srv.URL())
	data, err := os.ReadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(setFile, append([]byte("store: \"{env.MCC_TEST_REDIS}\"\n"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := fusion.LoadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	e, err := fusion.NewEngine(cfg, fusion.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	req := func(tc fusiontest.Case, ip string) *fusion.Request {
		return &fusion.Request{PeerCertificates: tc.Chain, ClientIP: ip, Header: http.Header{}}
	}
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2"} {
		e.Evaluate(ctx, c.SetID, req(c.Case(t, "no_cert"), ip))
	}
	valid := c.Case(t, "valid")
	if d := e.Evaluate(ctx, c.SetID, req(valid, "2001:db8:1:2::3")); d.Reason != threat.ReasonFailSafeActive {
		t.Fatalf("not banned: %s", d.Reason)
	}

	code, out, stderr := runCLI(t, "ban", "list", "--fusion", setFile)
	if code != 0 || !strings.Contains(out, "bank-prod") || !strings.Contains(out, "2001:db8:1:2::/64") || !strings.Contains(out, "address") {
		t.Fatalf("ban list: %d %q %q", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "ban", "list", "--store", srv.URL(), "--fusion-set", "bank-prod", "--json")
	var line struct {
		FusionSet, Subject, Value string
		Until                     time.Time
		Score                     int
	}
	if code != 0 || json.Unmarshal([]byte(out), &line) != nil || line.Value != "2001:db8:1:2::/64" || line.Score != 20 || time.Until(line.Until) < 50*time.Minute {
		t.Fatalf("ban list --json: %d %q %q (%+v)", code, out, stderr, line)
	}
	if code, out, _ := runCLI(t, "ban", "list", "--store", srv.URL(), "--fusion-set", "bank-beta"); code != 0 || !strings.Contains(out, "no live bans in fusion set bank-beta") {
		t.Fatalf("ban list of another set: %d %q", code, out)
	}

	// --store takes the same placeholders as the fusion file.
	code, out, stderr = runCLI(t, "ban", "lift", "--store", "{env.MCC_TEST_REDIS}", "--fusion-set", "bank-prod", "--address", "2001:db8:1:2::ffff")
	if code != 0 || !strings.Contains(out, "lifted 1 ban") || !strings.Contains(out, "2001:db8:1:2::/64") {
		t.Fatalf("ban lift: %d %q %q", code, out, stderr)
	}
	if d := e.Evaluate(ctx, c.SetID, req(valid, "2001:db8:1:2::3")); d.Action != fusion.Allow {
		t.Fatalf("after the lift: %s %s", d.Action, d.Reason)
	}
	// Lifting again lifts nothing: an error, so a typo does not pass
	// for success.
	code, _, stderr = runCLI(t, "ban", "lift", "--store", srv.URL(), "--fusion-set", "bank-prod", "--address", "2001:db8:1:2::ffff")
	wantOneLineError(t, code, stderr, 1, "no live ban of address 2001:db8:1:2::ffff in fusion set bank-prod")
}

func TestBanCLIErrors(t *testing.T) {
	cert := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"memory store", []string{"ban", "list", "--store", "memory"}, 1, "lives inside one gateway process"},
		{"memory lift", []string{"ban", "lift", "--store", "memory", "--fusion-set", "bank-prod", "--cert", cert}, 1, "lives inside one gateway process"},
		{"no store", []string{"ban", "list"}, 2, "--store (or --fusion) is required"},
		{"store and fusion", []string{"ban", "list", "--store", "memory", "--fusion", "x.yaml"}, 2, "not both"},
		{"fusion file missing", []string{"ban", "list", "--fusion", "/nonexistent/sets.yaml"}, 1, "/nonexistent/sets.yaml"},
		{"not a store", []string{"ban", "list", "--store", "postgres://u:hunter2@db/x"}, 1, "neither"},
		{"no set", []string{"ban", "lift", "--store", "redis://127.0.0.1:1", "--cert", cert}, 2, "--fusion-set is required"},
		{"bad set", []string{"ban", "lift", "--store", "redis://127.0.0.1:1", "--fusion-set", "bank.prod", "--cert", cert}, 2, "--fusion-set"},
		{"no subject", []string{"ban", "lift", "--store", "redis://127.0.0.1:1", "--fusion-set", "bank-prod"}, 2, "exactly one of --address, --device and --cert"},
		{"two subjects", []string{"ban", "lift", "--store", "redis://127.0.0.1:1", "--fusion-set", "bank-prod", "--cert", cert, "--device", "d"}, 2, "exactly one of"},
		{"bad address", []string{"ban", "lift", "--store", "redis://127.0.0.1:1", "--fusion-set", "bank-prod", "--address", "example.com"}, 2, "not an IP address or a prefix"},
		{"bad cert", []string{"ban", "lift", "--store", "redis://127.0.0.1:1", "--fusion-set", "bank-prod", "--cert", "abc"}, 2, "not a SHA-256"},
		{"unknown subcommand", []string{"ban", "clear"}, 2, `unknown subcommand "clear"`},
		{"missing env", []string{"ban", "list", "--store", "{env.MCC_TEST_NO_SUCH_VAR}"}, 1, "MCC_TEST_NO_SUCH_VAR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			wantOneLineError(t, code, stderr, tc.code, tc.want)
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("password in the error: %q", stderr)
			}
		})
	}
	// Redis that does not answer: a clear error, not "no live bans".
	code, _, stderr := runCLI(t, "ban", "list", "--store", "redis://:hunter2@127.0.0.1:1")
	wantOneLineError(t, code, stderr, 1, "listing bans")
	if strings.Contains(stderr, "hunter2") {
		t.Errorf("password in the error: %q", stderr)
	}
}
