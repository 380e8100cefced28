package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// hygieneRepoRoot is the module root (this package is cmd/mcc).
func hygieneRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// gitIgnored asks git which of paths (need not exist) the repository's
// .gitignore excludes. It uses a scratch repository holding only a copy of
// .gitignore, so it works in a source tree without .git (a tarball) too.
func gitIgnored(t *testing.T, root string, paths []string) map[string]bool {
	t.Helper()
	scratch := t.TempDir()
	data, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, ".gitignore"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "init", "-q", scratch).CombinedOutput(); err != nil {
		t.Fatalf("git init (scratch): %v\n%s", err, out)
	}
	cmd := exec.Command("git", "-C", scratch, "check-ignore", "--no-index", "--stdin")
	cmd.Stdin = strings.NewReader(strings.Join(paths, "\n") + "\n")
	out, err := cmd.Output()
	// Exit 1 means "none ignored"; anything else is a real failure.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("git check-ignore: %v", err)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			got[l] = true
		}
	}
	return got
}

// committedFiles lists the repository's files: git's index when the tree
// is a clone, else the source files on disk (a tarball has no binaries or
// generated files to confuse the check).
func committedFiles(t *testing.T, root string) []string {
	t.Helper()
	if out, err := exec.Command("git", "-C", root, "ls-files").Output(); err == nil && len(out) > 0 {
		return strings.Fields(string(out))
	}
	var files []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		switch filepath.Ext(p) {
		case ".go", ".md", ".yaml", ".json", ".Caddyfile", ".sh", ".mod", ".sum":
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	return files
}

// TestGitignoreKeepsSecretsAndGeneratedFilesOut runs the commands the
// README and the examples use, and checks with git itself that everything
// they write inside an example directory is ignored, that keys, bundles and
// passwords are ignored wherever they land, that binaries and quickstart
// output are ignored, and that no committed file is.
func TestGitignoreKeepsSecretsAndGeneratedFilesOut(t *testing.T) {
	root := hygieneRepoRoot(t)
	work := t.TempDir()
	in := func(p string) string { return filepath.Join(work, p) }
	for _, args := range [][]string{
		{"ca", "init", "--dir", in("ca")},
		{"issue", "--ca", in("ca"), "--fusion-set", "bank-defense", "--app-id", "com.example.bank", "--build", "1",
			"--out", in("bank-defense.p12"), "--legacy-out", in("bank-legacy.p12")},
		{"ca", "init", "--dir", in("control-ca")},
		{"cert", "create", "--ca", in("control-ca"), "--name", "mcc-xds", "--dns", "localhost", "--server", "--out", in("xds.pem"), "--key-out", in("xds-key.pem")},
		{"cert", "create", "--ca", in("control-ca"), "--name", "envoy", "--uri", "spiffe://mcc/envoy", "--client", "--out", in("envoy.pem"), "--key-out", in("envoy-key.pem")},
	} {
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("mcc %v: %s", args, stderr)
		}
	}
	var generated []string
	filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(work, p)
			generated = append(generated, filepath.ToSlash(rel))
		}
		return nil
	})
	// Files the example READMEs make with other tools.
	generated = append(generated, "server.pem", "server-key.pem", "bank-prod.pem", "admin-token", "events.jsonl")
	sort.Strings(generated)

	var want []string
	for _, ex := range []string{"examples/caddy", "examples/envoy"} {
		for _, g := range generated {
			want = append(want, ex+"/"+g)
		}
	}
	// Secrets anywhere (a user's own directory inside the clone).
	for _, g := range []string{"ca/ca-key.pem", "bank-defense.p12", "bank-defense.p12.password", "xds-key.pem", "admin-token", "app.pfx"} {
		want = append(want, "somewhere/"+g, g)
	}
	want = append(want, "mcc", "caddy", "bin/mcc", ".mcc-quickstart/ca/ca-key.pem", "sub/.mcc-quickstart/app.p12",
		"mcc-demo/ca/bank-prod/ca.pem", "mcc-demo/app.p12.certified.json")
	got := gitIgnored(t, root, want)
	for _, p := range want {
		if !got[p] {
			t.Errorf("%s is not ignored by .gitignore", p)
		}
	}

	// Nothing committed is ignored (the tree as committed stays clean), and
	// the files the examples ship are not ignored.
	shipped := append(committedFiles(t, root), "examples/caddy/fusion-sets.yaml", "examples/caddy/defense.Caddyfile",
		"examples/envoy/envoy-bootstrap.yaml", "examples/fusion-sets.yaml", "pki/keys.go", "LICENSE", "cmd/mcc/main.go")
	if len(shipped) < 50 {
		t.Fatalf("only %d repository files found", len(shipped))
	}
	for p := range gitIgnored(t, root, shipped) {
		t.Errorf("repository file %s matches .gitignore", p)
	}
}

// TestLicenseIsApache2: the repository carries the Apache License 2.0 text.
func TestLicenseIsApache2(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(hygieneRepoRoot(t), "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{"Apache License", "Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
		"9. Accepting Warranty or Additional Liability.", "END OF TERMS AND CONDITIONS", "APPENDIX: How to apply the Apache License to your work."} {
		if !strings.Contains(s, want) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
}
