// Package doctest runs the shell blocks of README.md and of the example
// READMEs as written, the way a new user copies them, in a copy of the
// repository. It holds only tests.
//
// Conventions for README authors (the markers are shell comments, so a
// reader sees them too):
//   - Blocks labelled ```sh or ```bash run; other shell-like labels
//     (```console, ```shell, ...) are refused, so nothing escapes the test.
//   - Each block runs in a fresh bash (set -e -o pipefail) in the README's
//     directory, in order; `mcc` and `caddy` are on PATH as the root
//     README's steps build them into bin/ (which runs first).
//   - A line whose trailing comment says `runs until Ctrl-C` (such as
//     `caddy run --config x   # runs until Ctrl-C`) starts a server: the test runs
//     it in the background, waits until it listens on a TCP port, and stops
//     it (SIGINT to its process group) after the README's last block.
//   - A line with `# not run by the README test: why` is not run; an HTML
//     comment `<!-- not run by the README test: why -->` on the line before
//     a fence skips the whole block. Use them only for what the tests
//     cannot run (an Envoy binary, a download, the test command itself).
//   - Ports: the test sets MCC_PORT, MCC_HANDSHAKE_PORT, UPSTREAM and
//     CADDY_ADMIN to free loopback ports; lines that use them keep their
//     defaults for a reader (`${MCC_PORT:-8443}`).
package doctest

import (
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(waitListen(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// readmes are the READMEs whose blocks run, in this order: the root one
// builds bin/mcc and bin/caddy, which the others use.
var readmes = []string{"README.md", "examples/caddy/README.md", "examples/envoy/README.md", "examples/ci/README.md", "examples/clients/README.md"}

// TestREADMEs runs every shell block of every README, then the checks that
// need what the blocks made while their servers still run.
func TestREADMEs(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README test needs %s on PATH: %v", tool, err)
		}
	}
	root := copyRepo(t)
	env := baseEnv(t, root)

	hooks := map[string]func(t *testing.T, s *session){
		"README.md":                checkQuickstartLines,
		"examples/caddy/README.md": checkCaddyExamplesServeNoSecret,
		"examples/envoy/README.md": checkEnvoyUpstreamServesNoSecret,
	}
	for _, name := range readmes {
		// Subtest names without slashes, so -run can pick one.
		ok := t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			blocks, err := shellBlocks(filepath.Join(root, name), name)
			if err != nil {
				t.Fatal(err)
			}
			if len(blocks) == 0 {
				t.Fatalf("%s has no shell block; the README test expects some", name)
			}
			s := newSession(t, filepath.Join(root, filepath.Dir(name)), env)
			s.run(blocks)
			if hook := hooks[name]; hook != nil {
				hook(t, s)
			}
		})
		if !ok && name == "README.md" {
			t.Fatalf("the root README failed; the example READMEs need the bin/mcc and bin/caddy it builds")
		}
	}
}

// copyRepo copies the repository's files (tracked, and new ones git does
// not ignore) into a scratch directory, so the blocks can create CAs,
// bundles and binaries as a user's clone would get them.
func copyRepo(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "mcc")
	for _, rel := range repoFiles(t, src) {
		from := filepath.Join(src, rel)
		info, err := os.Lstat(from)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// repoFiles lists the repository's files: git's list when src is a git
// work tree, else every file outside dot directories and bin/.
func repoFiles(t *testing.T, src string) []string {
	t.Helper()
	var files []string
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err == nil {
		for _, rel := range strings.Split(string(out), "\x00") {
			if rel != "" {
				files = append(files, rel)
			}
		}
		return files
	}
	t.Logf("git ls-files failed (%v); copying the directory tree instead", err)
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "bin") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// baseEnv is the environment of every block: this process's, with the Go
// caches kept (HOME moves), Caddy's directories isolated, bin/ on PATH, and
// free loopback ports for the example servers.
func baseEnv(t *testing.T, root string) []string {
	t.Helper()
	goEnv, err := exec.Command("go", "env", "-json", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	var g map[string]string
	if err := json.Unmarshal(goEnv, &g); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	set := map[string]string{
		"HOME":               home,
		"XDG_CONFIG_HOME":    filepath.Join(home, "config"),
		"XDG_DATA_HOME":      filepath.Join(home, "data"),
		"GOCACHE":            g["GOCACHE"],
		"GOMODCACHE":         g["GOMODCACHE"],
		"GOPATH":             g["GOPATH"],
		"GOFLAGS":            strings.ReplaceAll(os.Getenv("GOFLAGS"), "-trimpath", ""),
		"PATH":               filepath.Join(root, "bin") + string(os.PathListSeparator) + os.Getenv("PATH"),
		"MCC_PORT":           freePort(t),
		"MCC_HANDSHAKE_PORT": freePort(t),
		"UPSTREAM":           "127.0.0.1:" + freePort(t),
		"CADDY_ADMIN":        "127.0.0.1:" + freePort(t),
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok || k == "MCC_BIND" || strings.HasPrefix(k, "MCC_DOCTEST") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestMarkdownBlocks checks the block reader on the cases the READMEs
// use: indented fences in list items, continuations, markers, and a
// refused label.
func TestMarkdownBlocks(t *testing.T) {
	md := "intro\n\n1. step\n\n   ```sh\n   mcc ca init --dir ca\n   ```\n\n" +
		"<!-- not run by the README test: benchmarks -->\n```sh\ngo test -bench .\n```\n\n" +
		"```caddyfile\nfoo\n```\n\n```bash\nopenssl req -x509 \\\n  -out x.pem   # comment\nserver   # the server; runs until Ctrl-C\n./t.sh   # not run by the README test: it runs this test\n```\n"
	path := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	blocks, err := shellBlocks(path, "README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 {
		t.Fatalf("got %d blocks, want 3: %+v", len(blocks), blocks)
	}
	if got := blocks[0].lines; len(got) != 1 || got[0] != "mcc ca init --dir ca" || blocks[0].line != 5 {
		t.Errorf("indented block: %+v", blocks[0])
	}
	if blocks[1].skip != "benchmarks" {
		t.Errorf("block-level skip marker not read: %+v", blocks[1])
	}
	lines := logicalLines(blocks[2].lines)
	if len(lines) != 3 {
		t.Fatalf("logical lines %q, want 3", lines)
	}
	for i, want := range []lineKind{runLine, backgroundLine, skipLine} {
		if kind, err := classify(lines[i]); err != nil || kind != want {
			t.Errorf("classify(%q) = %v, %v; want %v", lines[i], kind, err, want)
		}
	}
	for _, bad := range []string{"x   # not run by the README test", "server &   # runs until Ctrl-C", "python3 -m http.server 8080 &"} {
		if _, err := classify(bad); err == nil {
			t.Errorf("classify(%q) accepted a malformed marker", bad)
		}
	}
	if err := os.WriteFile(path, []byte("```console\n$ mcc version\n```\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := shellBlocks(path, "README.md"); err == nil || !strings.Contains(err.Error(), "```sh") {
		t.Errorf("a ```console block: err = %v, want a refusal that asks for ```sh", err)
	}
}
