package main

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// mccModules are the module IDs an mcc Caddy build must carry.
var mccModules = []string{
	"mcc",
	"http.handlers.fusion_set",
	"tls.client_auth.verifier.fusion_set",
}

// TestListModules builds this main with the plain Go toolchain, as the README
// shows, and checks that `caddy list-modules` lists mcc's modules next to
// the standard ones.
func TestListModules(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}

	out, err := exec.CommandContext(ctx, bin, "list-modules").Output()
	if err != nil {
		t.Fatalf("caddy list-modules: %v", err)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		listed[string(bytes.TrimSpace(sc.Bytes()))] = true
	}
	for _, m := range mccModules {
		if !listed[m] {
			t.Errorf("caddy list-modules does not list %q", m)
		}
	}
	// A standard module too, so a build that lost modules/standard fails.
	if !listed["http.handlers.reverse_proxy"] {
		t.Errorf("caddy list-modules does not list the standard http.handlers.reverse_proxy")
	}
	if t.Failed() {
		t.Logf("caddy list-modules:\n%s", out)
	}
}
