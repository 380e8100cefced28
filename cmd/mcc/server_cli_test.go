package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/client"
)

// TestServerTokenCommands: create prints the token once (stdout holds only
// it) or writes it 0600; list shows it without its secret; revoke by name
// makes the API refuse it.
func TestServerTokenCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	code, stdout, stderr := runCLI(t, "server", "token", "create", "--data", data, "--name", "ci-android", "--scope", "issue,read", "--expires-in", "30d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	token := strings.TrimSpace(stdout)
	if !strings.HasPrefix(token, "mcc_") || strings.Count(stdout, "\n") != 1 || !strings.Contains(stderr, "shown once") {
		t.Fatalf("stdout %q, stderr %q", stdout, stderr)
	}
	out := filepath.Join(dir, "admin.token")
	code, stdout, stderr = runCLI(t, "server", "token", "create", "--data", data, "--name", "admin", "--scope", "admin", "--out", out)
	if code != 0 || strings.Contains(stdout, "mcc_") {
		t.Fatalf("--out: exit %d, stdout %q, %s", code, stdout, stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	code, _, stderr = runCLI(t, "server", "token", "create", "--data", data, "--name", "other", "--scope", "read", "--out", out)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("--out over a file: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "server", "token", "create", "--data", data, "--name", "ci-android", "--scope", "read")
	if code != 1 || !strings.Contains(stderr, "already used") {
		t.Errorf("duplicate name: exit %d, %q", code, stderr)
	}
	code, stdout, _ = runCLI(t, "server", "token", "list", "--data", data)
	if code != 0 || !strings.Contains(stdout, "ci-android") || !strings.Contains(stdout, "issue,read") || strings.Contains(stdout, token[20:]) {
		t.Errorf("list: exit %d\n%s", code, stdout)
	}

	srv, err := server.Open(context.Background(), server.Config{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := startHTTP(t, srv)
	c, err := client.New(client.Options{Server: hs, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Certificates(context.Background(), client.CertificateFilter{}); err != nil {
		t.Fatalf("the created token is refused: %v", err)
	}
	code, stdout, stderr = runCLI(t, "server", "token", "revoke", "--data", data, "ci-android")
	if code != 0 || !strings.Contains(stdout, "revoked token ci-android") {
		t.Fatalf("revoke: exit %d %s%s", code, stdout, stderr)
	}
	if _, err := c.Certificates(context.Background(), client.CertificateFilter{}); !client.IsProblem(err, "unauthorized") {
		t.Errorf("a revoked token: %v, want unauthorized", err)
	}
	code, _, stderr = runCLI(t, "server", "token", "revoke", "--data", data, "nope")
	if code != 1 || !strings.Contains(stderr, "no token") {
		t.Errorf("unknown token: exit %d %q", code, stderr)
	}
	for _, args := range [][]string{
		{"server", "token", "create", "--name", "x", "--scope", "read"},
		{"server", "token", "create", "--data", data, "--database", "postgres://h/db", "--name", "x", "--scope", "read"},
	} {
		code, _, stderr := runCLI(t, args...)
		wantOneLineError(t, code, stderr, 2, "exactly one of --data DIR and --database URL")
	}
	code, _, stderr = runCLI(t, "server", "token", "create", "--data", data, "--name", "x", "--scope", "root")
	wantOneLineError(t, code, stderr, 2, "unknown scope")
}

func startHTTP(t *testing.T, srv *server.Server) string {
	t.Helper()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestServerRunListenRule: the server refuses plain HTTP off loopback,
// serves on loopback, prints its URL, and stops on cancel.
func TestServerRunListenRule(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runCLI(t, "server", "--data", data, "--listen", "0.0.0.0:0")
	if code != 1 || !strings.Contains(stderr, "not a loopback address") {
		t.Errorf("off loopback without TLS: exit %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "server", "run", "--data", data, "--tls-cert", "c.pem")
	wantOneLineError(t, code, stderr, 2, "--tls-cert and --tls-key go together")
	// --ban-store: a shared store only, and its password never echoed.
	code, _, stderr = runCLI(t, "server", "--data", data, "--ban-store", "memory")
	wantOneLineError(t, code, stderr, 2, "lives inside one gateway process")
	code, _, stderr = runCLI(t, "server", "--data", data, "--ban-store", "http://u:s3cret@example.com")
	wantOneLineError(t, code, stderr, 2, "--ban-store")
	if strings.Contains(stderr, "s3cret") {
		t.Errorf("the --ban-store error shows the password: %s", stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"server", "--data", data, "--listen", "127.0.0.1:0"}, pw, io.Discard)
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(strings.TrimPrefix(line, "mcc server listening on "))
	resp, err := http.Get(url + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("health: %s", resp.Status)
	}
	if fi, err := os.Stat(filepath.Join(data, server.KEKFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("KEK file: %v %v", fi, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after cancel", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not stop")
	}
	pw.Close()
}

// TestServerBackupRestoreCAImportKEK: a backup restores into a new data
// directory with the KEK and serves the same certificates; without the
// right KEK the restored database does not start; an imported CA issues.
func TestServerBackupRestoreCAImportKEK(t *testing.T) {
	e := startRemoteServer(t)
	out := filepath.Join(e.dir, "b1.p12")
	if code, so, se := runCLI(t, "issue", "--fusion-set", "bank-prod", "--app-id", "com.example.bank", "--build", "b1", "--out", out,
		"--server", e.url, "--token-file", e.ciToken); code != 0 {
		t.Fatalf("issue: %s%s", so, se)
	}
	data := filepath.Join(e.dir, "data")
	backup := filepath.Join(e.dir, "backup.db")
	code, stdout, stderr := runCLI(t, "server", "backup", "--data", data, "--out", backup)
	if code != 0 || !strings.Contains(stdout, "kek.key") {
		t.Fatalf("backup: exit %d %s%s", code, stdout, stderr)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	code, _, stderr = runCLI(t, "server", "restore", "--data", filepath.Join(e.dir, "r0"), "--in", backup)
	wantOneLineError(t, code, stderr, 2, "--kek-file is required")

	// Another KEK: the restored database does not start.
	otherKEK := filepath.Join(e.dir, "other.kek")
	if code, so, se := runCLI(t, "server", "kek", "create", "--kek-file", otherKEK); code != 0 {
		t.Fatalf("kek create: %s%s", so, se)
	}
	code, _, stderr = runCLI(t, "server", "kek", "create", "--kek-file", otherKEK)
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("kek create over a file: exit %d %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "server", "restore", "--data", filepath.Join(e.dir, "r1"), "--in", backup, "--kek-file", otherKEK)
	if code != 1 || !strings.Contains(stderr, "does not open the stored CA keys") {
		t.Errorf("restore with another KEK: exit %d %q", code, stderr)
	}

	restored := filepath.Join(e.dir, "r2")
	code, stdout, stderr = runCLI(t, "server", "restore", "--data", restored, "--in", backup, "--kek-file", filepath.Join(data, server.KEKFileName))
	if code != 0 || !strings.Contains(stdout, "audit log verified") {
		t.Fatalf("restore: exit %d %s%s", code, stdout, stderr)
	}
	srv, err := server.Open(context.Background(), server.Config{DataDir: restored})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := startHTTP(t, srv)
	c, err := client.New(client.Options{Server: url, TokenFile: e.ciToken})
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.Certificates(context.Background(), client.CertificateFilter{BuildID: "b1"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("restored server lists %+v, %v", page, err)
	}
	// The restored server still issues with the restored CA.
	if code, so, se := runCLI(t, "issue", "--fusion-set", "bank-prod", "--app-id", "com.example.bank", "--build", "b2",
		"--out", filepath.Join(e.dir, "b2.p12"), "--server", url, "--token-file", e.ciToken); code != 0 {
		t.Fatalf("issue on the restored server: %s%s", so, se)
	}

	// ca import: a fusion set takes an `mcc ca init` CA; a set keeps its first.
	caDir := newCADir(t)
	code, stdout, stderr = runCLI(t, "server", "ca", "import", "--data", restored, "--set", "shop-prod", "--ca", caDir)
	if code != 0 || !strings.Contains(stdout, "shop-prod") {
		t.Fatalf("ca import: exit %d %s%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "server", "ca", "import", "--data", restored, "--set", "bank-prod", "--ca", caDir)
	if code != 1 || !strings.Contains(stderr, "has a CA already") {
		t.Errorf("import over a set's CA: exit %d %q", code, stderr)
	}
}
