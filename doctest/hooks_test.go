package doctest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// checkQuickstartLines runs after README.md's blocks, while the quickstart
// that `go run ./cmd/mcc quickstart` started still runs. It reads what the
// quickstart printed, as its user would: no Caddy log line among it, and
// every printed command (cd, the curl lines, the mcc revoke line) runs as
// printed for a `go run` user, who has no mcc on PATH. The generated
// fusion set file's comments name real flags and files.
func checkQuickstartLines(t *testing.T, s *session) {
	_, logPath, ok := s.background("quickstart")
	if !ok {
		t.Fatalf("README.md has no background line that starts the quickstart")
	}
	printed, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(printed, []byte("Press Ctrl-C to stop.")) {
		t.Fatalf("the quickstart did not print its instructions:\n%s", printed)
	}
	var lines []string
	var revoke, enroll, qsDir string
	sc := bufio.NewScanner(bytes.NewReader(printed))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "{") && json.Valid([]byte(trimmed)) || strings.Contains(line, "redirected default logger") {
			t.Errorf("the quickstart's output carries a Caddy log line: %s", line)
		}
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		switch {
		case strings.HasPrefix(trimmed, "cd "):
			lines = append(lines, trimmed)
			qsDir = unquote(t, strings.TrimPrefix(trimmed, "cd "))
		case strings.HasPrefix(trimmed, "curl "):
			lines = append(lines, trimmed)
		case strings.Contains(trimmed, " enroll --server "):
			// Before the install certificate's curl lines, as printed.
			lines = append(lines, trimmed)
			enroll = trimmed
		case strings.Contains(trimmed, " revoke --ca "):
			revoke = trimmed
		}
	}
	if qsDir == "" || revoke == "" || enroll == "" || len(lines) < 4 {
		t.Fatalf("could not find the cd line, the curl lines, the enroll line and the revoke line in the quickstart's output:\n%s", printed)
	}
	// Started with go run and with another mcc on PATH: the line must run
	// this module's mcc through go, not rely on PATH.
	if !strings.HasPrefix(revoke, "go -C ") || !strings.Contains(revoke, " run ./cmd/mcc revoke ") {
		t.Errorf("the quickstart, started by go run, printed %q; want a line that runs mcc through go run", revoke)
	}
	lines = append(lines, revoke)

	// A go run user's shell: no mcc on PATH.
	env := slices.Clone(s.env)
	var path []string
	for _, p := range filepath.SplitList(envValue(env, "PATH")) {
		if _, err := os.Stat(filepath.Join(p, "mcc")); err != nil {
			path = append(path, p)
		}
	}
	env = append(env, "PATH="+strings.Join(path, string(os.PathListSeparator)))
	script := "set -eo pipefail\nPS4='+ $ '\nset -x\n" + strings.Join(lines, "\n") + "\n"
	ctx, cancel := context.WithTimeout(t.Context(), blockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir, cmd.Env = s.dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the quickstart's printed lines fail for a go run user (%v):\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("enrolled install ")) {
		t.Errorf("the printed enroll line did not enroll:\n%s", out)
	}
	if !bytes.Contains(out, []byte("revoked serial")) {
		t.Errorf("the printed revoke line did not revoke:\n%s", out)
	}

	checkFusionFileComments(t, qsDir, filepath.Join(s.dir, "bin", "mcc"))
}

// checkFusionFileComments checks the quickstart's generated fusion set
// file: every `mcc CMD --flag` in its comments is a flag `mcc CMD --help`
// lists, and every file it names exists in the quickstart directory.
func checkFusionFileComments(t *testing.T, dir, mcc string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var comments strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "#"); ok {
			comments.WriteString(c + "\n")
		}
	}
	text := comments.String()
	uses := regexp.MustCompile(`mcc ([a-z]+)((?:\s+--?[a-z-]+(?:\s+[^\s-][^\s]*)?)+)`).FindAllStringSubmatch(text, -1)
	if len(uses) == 0 {
		t.Errorf("the generated fusion set file's comments show no mcc command:\n%s", text)
	}
	for _, m := range uses {
		help, _ := exec.Command(mcc, m[1], "--help").CombinedOutput()
		for _, flag := range regexp.MustCompile(`--?([a-z-]+)`).FindAllStringSubmatch(m[2], -1) {
			if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(flag[1]) + `\b`).Match(help) {
				t.Errorf("the generated fusion set file's comments use mcc %s --%s, which `mcc %s --help` does not list:\n%s", m[1], flag[1], m[1], help)
			}
		}
	}
	for _, name := range regexp.MustCompile(`[A-Za-z0-9_.-]+\.(?:pem|p12)\b`).FindAllString(text, -1) {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("the generated fusion set file's comments name %s, which the quickstart directory does not hold", name)
		}
	}
}

// exampleBundles maps each example Caddyfile to the bundle of the fusion
// set it enforces, as the README's step 2 issues them.
var exampleBundles = map[string]string{
	"defense.Caddyfile":        "bank-defense.p12",
	"detection.Caddyfile":      "bank-detection.p12",
	"defense-events.Caddyfile": "bank-defense-events.p12",
}

// checkCaddyExamplesServeNoSecret runs after examples/caddy/README.md's
// blocks, while the backend its step 4 started still runs. Each example
// Caddyfile is started in turn (the README's `caddy run` line, on other
// ports), and every secret the steps made in this directory (CA key, audit
// log, bundles, their passwords, the server key) is requested through it by
// path: with the set's bundle (the request reaches the backend), without a
// certificate, and with another set's bundle. No response may carry a
// secret. The defense example's comment says blocks show in its access log:
// that is checked too.
func checkCaddyExamplesServeNoSecret(t *testing.T, s *session) {
	secrets := collectSecrets(t, s.dir)
	for _, want := range []string{"/ca/ca-key.pem", "/server-key.pem", "/bank-defense.p12", "/bank-defense.p12.password"} {
		if _, ok := secrets[want]; !ok {
			t.Fatalf("the README's steps did not make %s (found %v)", want, keys(secrets))
		}
	}
	paths := keys(secrets)
	caddyBin := filepath.Join(s.dir, "..", "..", "bin", "caddy")

	for _, name := range slices.Sorted(maps.Keys(exampleBundles)) {
		t.Run(name, func(t *testing.T) {
			port, hport := freePort(t), freePort(t)
			gw := startCaddy(t, caddyBin, s.dir, append(slices.Clone(s.env),
				"MCC_PORT="+port, "MCC_HANDSHAKE_PORT="+hport, "CADDY_ADMIN=127.0.0.1:"+freePort(t)), name, port)
			ports := []string{port}
			if name == "defense.Caddyfile" {
				ports = append(ports, hport)
			}
			own := exampleBundles[name]
			other := "bank-detection.p12"
			if own == other {
				other = "bank-defense.p12"
			}
			for _, p := range ports {
				// The set's own bundle first: these requests reach the
				// backend, and no failure may have banned the client yet.
				for _, path := range paths {
					status, body := curl(t, s.dir, p, path, own)
					if status != 200 || !strings.HasPrefix(body, "upstream: GET "+path) {
						t.Errorf("%s port %s, %s with %s: HTTP %d, body %q; want the backend's answer", name, p, path, own, status, body)
					}
					checkNoSecret(t, name, p, path, own, body, secrets)
				}
				for _, bundle := range []string{"", other} {
					for _, path := range paths {
						_, body := curl(t, s.dir, p, path, bundle)
						checkNoSecret(t, name, p, path, bundle, body, secrets)
					}
				}
			}
			if name == "defense.Caddyfile" {
				// A block must show in the access log, as the file's
				// comment says.
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(gw.String(), `"mcc_reason":"NO_CLIENT_CERT"`) {
					if time.Now().After(deadline) {
						t.Errorf("defense.Caddyfile: a request without a certificate does not show in Caddy's log with mcc_reason:\n%s", gw)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
}

// collectSecrets returns the secrets a README's steps made in dir, by URL
// path: private files (no access for group and others), bundles, their
// passwords and private keys.
func collectSecrets(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	secrets := map[string][]byte{} // URL path -> content
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := d.Name()
		if info.Mode().Perm()&0o077 == 0 || strings.HasSuffix(name, ".p12") || strings.HasSuffix(name, ".password") || strings.HasSuffix(name, "key.pem") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			secrets["/"+filepath.ToSlash(rel)] = data
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return secrets
}

// checkEnvoyUpstreamServesNoSecret runs after examples/envoy/README.md's
// blocks, while the upstream its steps started still runs (there is no
// Envoy in the tests, so the upstream is asked directly, as Envoy would
// forward a request): no secret the steps made may come back.
func checkEnvoyUpstreamServesNoSecret(t *testing.T, s *session) {
	secrets := collectSecrets(t, s.dir)
	if len(secrets) == 0 {
		t.Fatalf("the README's steps made no key, bundle or password in %s", s.dir)
	}
	data, err := os.ReadFile(filepath.Join(s.dir, "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, m := range regexp.MustCompile(`endpoints:\s*\[([^\]]+)\]`).FindAllStringSubmatch(string(data), -1) {
		for _, e := range strings.Split(m[1], ",") {
			endpoints = append(endpoints, strings.Trim(strings.TrimSpace(e), `"'`))
		}
	}
	if len(endpoints) == 0 {
		t.Fatalf("found no upstream endpoints in %s", filepath.Join(s.dir, "fusion-sets.yaml"))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, ep := range endpoints {
		for _, path := range keys(secrets) {
			resp, err := client.Get("http://" + ep + path)
			if err != nil {
				t.Errorf("the example's upstream %s does not answer (is the README's upstream line running?): %v", ep, err)
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			checkNoSecret(t, "the Envoy example's upstream", ep, path, "", string(body), secrets)
		}
	}
}

func checkNoSecret(t *testing.T, example, port, path, bundle, body string, secrets map[string][]byte) {
	t.Helper()
	if strings.Contains(body, "PRIVATE KEY") {
		t.Errorf("%s port %s, %s with %q: the response carries a private key", example, port, path, bundle)
		return
	}
	for name, secret := range secrets {
		s := bytes.TrimSpace(secret)
		if len(s) >= 16 && strings.Contains(body, string(s)) {
			t.Errorf("%s port %s, %s with %q: the response carries the content of %s", example, port, path, bundle, name)
		}
	}
}

// curl requests path on localhost:port with the server certificate of the
// README's step 3 and, if bundle is set, that bundle as client certificate,
// as the README's curl lines do. A failed handshake gives status 0.
func curl(t *testing.T, dir, port, path, bundle string) (int, string) {
	t.Helper()
	args := []string{"--silent", "--show-error", "--max-time", "20", "--cacert", "server.pem", "--write-out", "\n%{http_code}"}
	if bundle != "" {
		pw, err := os.ReadFile(filepath.Join(dir, bundle+".password"))
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--cert-type", "P12", "--cert", bundle+":"+strings.TrimRight(string(pw), "\r\n"))
	}
	args = append(args, "https://localhost:"+port+path)
	cmd := exec.CommandContext(t.Context(), "curl", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	i := bytes.LastIndexByte(out, '\n')
	if i < 0 {
		return 0, string(out)
	}
	body := string(out[:i])
	status, convErr := strconv.Atoi(string(out[i+1:]))
	if err != nil || convErr != nil {
		return 0, body // no HTTP response: a refused handshake
	}
	return status, body
}

// startCaddy runs `caddy run --config name` in dir, waits until it
// listens on port, and stops it (SIGINT, as Ctrl-C) when the test ends. It
// returns Caddy's output.
func startCaddy(t *testing.T, caddyBin, dir string, env []string, name, port string) *syncBuffer {
	t.Helper()
	out := new(syncBuffer)
	cmd := exec.Command(caddyBin, "run", "--config", name)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return out
		}
		select {
		case err := <-done:
			t.Fatalf("caddy run --config %s exited: %v\n%s", name, err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy run --config %s does not listen on %s after a minute:\n%s", name, port, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func unquote(t *testing.T, s string) string {
	t.Helper()
	out, err := exec.Command("bash", "-c", "printf %s "+s).Output()
	if err != nil {
		t.Fatalf("bash could not read %s: %v", s, err)
	}
	return string(out)
}

func keys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
