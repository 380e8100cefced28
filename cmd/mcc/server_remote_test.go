package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/client"
)

// serverRemoteEnv is a real mcc server (SQLite in a temp dir) on loopback
// with one fusion set published, and token files for the CLI.
type serverRemoteEnv struct {
	srv                              *server.Server
	url                              string
	dir                              string
	adminToken, ciToken, revokeToken string // token files
	// skew is how far the server's clock is from the wall clock: a test
	// moves it to reach a certificate's renewal window without waiting.
	skew atomic.Int64
}

// setSkew sets the server's clock to the wall clock plus d.
func (e *serverRemoteEnv) setSkew(d time.Duration) { e.skew.Store(int64(d)) }

const remoteSetYAML = "fusion_sets:\n  - id: bank-prod\n    app_id: com.example.bank\n    mode: defense\n"

func startRemoteServer(t *testing.T) *serverRemoteEnv { return startRemoteServerAt(t, 0) }

// startRemoteServerAt is startRemoteServer with the server's clock at the
// wall clock plus skew from the start (its CA is made then too).
func startRemoteServerAt(t *testing.T, skew time.Duration) *serverRemoteEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &serverRemoteEnv{dir: dir}
	e.setSkew(skew)
	srv, err := server.Open(ctx, server.Config{DataDir: filepath.Join(dir, "data"),
		Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e.srv, e.url = srv, hs.URL
	token := func(name string, scopes ...auth.Scope) string {
		secret, _, err := srv.Tokens().Create(ctx, name, scopes, 0, "test")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".token")
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.adminToken = token("admin", auth.ScopeAdmin)
	e.ciToken = token("ci", auth.ScopeIssue, auth.ScopeRead)
	e.revokeToken = token("ops", auth.ScopeRevoke, auth.ScopeRead)
	admin, _ := os.ReadFile(e.adminToken)
	req, _ := http.NewRequest("PUT", hs.URL+"/v1/fusion-sets/bank-prod", strings.NewReader(remoteSetYAML))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("If-None-Match", "*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing the fusion set: %s", resp.Status)
	}
	return e
}

func (e *serverRemoteEnv) client(t *testing.T, tokenFile string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{Server: e.url, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// caCert is the fusion set's CA as the server publishes it.
func (e *serverRemoteEnv) caCert(t *testing.T) string {
	t.Helper()
	pemData, err := e.client(t, e.ciToken).CAPEM(context.Background(), "bank-prod")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, "ca.pem")
	if err := os.WriteFile(p, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRemoteIssueRevokeVerify: mcc issue, certify verify and revoke with
// --server do over the API what they do with --ca: the files are the local
// mode's (modes, a record the local verifier accepts), a retry returns the
// same build, and a revocation shows in the verification.
func TestRemoteIssueRevokeVerify(t *testing.T) {
	e := startRemoteServer(t)
	out := filepath.Join(e.dir, "b1.p12")
	legacy := filepath.Join(e.dir, "b1-legacy.p12")
	remote := []string{"--server", e.url, "--token-file", e.ciToken}
	code, stdout, stderr := runCLI(t, append([]string{"issue", "--fusion-set", "bank-prod", "--app-id", "com.example.bank",
		"--build", "b1", "--out", out, "--legacy-out", legacy, "--sdk-version", "9.1", "--valid-for", "90d"}, remote...)...)
	if code != 0 {
		t.Fatalf("issue --server: exit %d\n%s%s", code, stdout, stderr)
	}
	for p, mode := range map[string]os.FileMode{out: 0o600, out + ".password": 0o600, legacy: 0o600, legacy + ".password": 0o600, out + ".certified.json": 0o644} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), mode)
		}
	}
	// The record verifies with the local verifier, against both bundles.
	ca := e.caCert(t)
	for _, b := range []string{out, legacy} {
		if code, so, se := runCLI(t, "certify", "verify", out+".certified.json", "--ca", ca, "--bundle", b); code != 0 {
			t.Errorf("local certify verify of %s: exit %d\n%s%s", b, code, so, se)
		}
	}
	rec, err := pki.ReadRecordFile(out+".certified.json", mustCACert(t, ca), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Build.ID != "b1" || rec.Build.SDKVersion != "9.1" || rec.LegacyBundle == nil {
		t.Errorf("record: %+v", rec.Build)
	}
	if life := rec.Certificate.NotAfter.Sub(rec.Certificate.NotBefore); life < 89*24*time.Hour || life > 91*24*time.Hour {
		t.Errorf("--valid-for 90d gave a certificate valid for %s", life)
	}

	// A retried job (same set, app, build) gets the same build.
	again := filepath.Join(e.dir, "retry.p12")
	code, stdout, stderr = runCLI(t, append([]string{"issue", "--fusion-set", "bank-prod", "--app-id", "com.example.bank",
		"--build", "b1", "--out", again, "--legacy-out", filepath.Join(e.dir, "retry-legacy.p12"), "--sdk-version", "9.1", "--valid-for", "90d"}, remote...)...)
	if code != 0 || !strings.Contains(stdout, "replayed") {
		t.Fatalf("retry: exit %d\n%s%s", code, stdout, stderr)
	}
	if !bytes.Equal(pkiReadFile(t, out), pkiReadFile(t, again)) {
		t.Error("a retried issuance wrote another bundle")
	}
	page, err := e.client(t, e.ciToken).Certificates(context.Background(), client.CertificateFilter{FusionSet: "bank-prod", BuildID: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Serial != rec.Certificate.Serial {
		t.Fatalf("certificates of build b1: %+v, want only %s", page.Items, rec.Certificate.Serial)
	}

	// Same build, other details: refused with a hint, nothing written.
	other := filepath.Join(e.dir, "other.p12")
	code, _, stderr = runCLI(t, append([]string{"issue", "--fusion-set", "bank-prod", "--app-id", "com.example.bank",
		"--build", "b1", "--out", other, "--legacy-out", filepath.Join(e.dir, "other-legacy.p12"), "--sdk-version", "9.2", "--valid-for", "90d"}, remote...)...)
	if code != 1 || !strings.Contains(stderr, "idempotency-key-reused") || !strings.Contains(stderr, "--idempotency-key") {
		t.Errorf("same key, other body: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("a refused issuance wrote a bundle")
	}

	code, stdout, stderr = runCLI(t, append([]string{"certify", "verify", out + ".certified.json", "--bundle", out}, remote...)...)
	if code != 0 || !strings.Contains(stdout, "not revoked (checked by the server)") || !strings.Contains(stdout, "opens to the record's certificate") {
		t.Fatalf("certify verify --server: exit %d\n%s%s", code, stdout, stderr)
	}
	// The CI token may not revoke; the revoke token may.
	byBuild := []string{"revoke", "--fusion-set", "bank-prod", "--app-id", "com.example.bank", "--build", "b1", "--reason", "keyCompromise", "--server", e.url}
	code, _, stderr = runCLI(t, append(byBuild, "--token-file", e.ciToken)...)
	if code != 1 || !strings.Contains(stderr, "forbidden") {
		t.Errorf("revoke with an issue token: exit %d, %q", code, stderr)
	}
	code, stdout, stderr = runCLI(t, append(byBuild, "--token-file", e.revokeToken)...)
	if code != 0 || !strings.Contains(stdout, "revoked serial "+rec.Certificate.Serial) || !strings.Contains(stdout, "CRL re-signed: bank-prod") {
		t.Fatalf("revoke --build: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, append([]string{"certify", "verify", out + ".certified.json"}, remote...)...)
	if code != 1 || !strings.Contains(stderr, "has been revoked") {
		t.Errorf("certify verify of a revoked build: exit %d, %q", code, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"certify", "verify", out + ".certified.json", "--allow-revoked"}, remote...)...)
	if code != 0 || !strings.Contains(stdout, "REVOKED") || !strings.Contains(stderr, "warning:") {
		t.Errorf("--allow-revoked: exit %d\n%s%s", code, stdout, stderr)
	}
	// An unknown serial: the server's problem, one line plus its field.
	code, _, stderr = runCLI(t, "revoke", "--serial", "abcd", "--server", e.url, "--token-file", e.revokeToken)
	if code != 1 || !strings.Contains(stderr, "HTTP 422") {
		t.Errorf("unknown serial: exit %d, %q", code, stderr)
	}
	// A tampered record is refused by the server.
	data := pkiReadFile(t, out+".certified.json")
	tampered := filepath.Join(e.dir, "tampered.json")
	os.WriteFile(tampered, bytes.Replace(data, []byte(`"b1"`), []byte(`"b2"`), 1), 0o644)
	code, _, stderr = runCLI(t, append([]string{"certify", "verify", tampered}, remote...)...)
	if code != 1 || !strings.Contains(stderr, "check failed") {
		t.Errorf("tampered record: exit %d, %q", code, stderr)
	}
}

func mustCACert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := loadCACertArg(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRemoteBadInput: wrong combinations are one-line usage errors, and
// no secret (the token) is ever printed.
func TestRemoteBadInput(t *testing.T) {
	e := startRemoteServer(t)
	token := strings.TrimSpace(string(pkiReadFile(t, e.ciToken)))
	wrong := filepath.Join(e.dir, "wrong.token")
	os.WriteFile(wrong, []byte(token[:len(token)-4]+"AAAA"), 0o600)
	out := filepath.Join(e.dir, "x.p12")
	issue := []string{"issue", "--fusion-set", "bank-prod", "--app-id", "com.example.bank", "--build", "b9", "--out", out}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ca and server", append(issue, "--server", e.url, "--token-file", e.ciToken, "--ca", e.dir), 2, "--ca is for the local mode"},
		{"set file and server", append(issue, "--server", e.url, "--token-file", e.ciToken, "--fusion-set-file", "x.yaml"), 2, "--fusion-set-file is for the local mode"},
		{"no token file", append(issue, "--server", e.url), 2, "--token-file is required"},
		{"token file without server", append(issue, "--ca", e.dir, "--token-file", e.ciToken), 2, "--token-file needs --server"},
		{"key without server", append(issue, "--ca", e.dir, "--idempotency-key", "k"), 2, "--idempotency-key needs --server"},
		{"plain http off loopback", append(issue, "--server", "http://mcc.example.com", "--token-file", e.ciToken), 1, "plain http is refused off loopback"},
		{"missing token file", append(issue, "--server", e.url, "--token-file", filepath.Join(e.dir, "none")), 1, "reading the token file"},
		{"wrong token", append(issue, "--server", e.url, "--token-file", wrong), 1, "unauthorized"},
		{"unknown set", []string{"issue", "--fusion-set", "nope", "--app-id", "com.example.bank", "--build", "b9", "--out", out, "--server", e.url, "--token-file", e.ciToken}, 1, "HTTP 404"},
		{"revoke build flags locally", []string{"revoke", "--ca", e.dir, "--build", "b1", "--fusion-set", "bank-prod", "--app-id", "a"}, 2, "need --server"},
		{"revoke two targets", []string{"revoke", "--server", e.url, "--token-file", e.revokeToken, "--serial", "ab", "--build", "b1", "--fusion-set", "bank-prod", "--app-id", "a"}, 2, "exactly one of --serial, --cert, --build and --install"},
		{"revoke half a build", []string{"revoke", "--server", e.url, "--token-file", e.revokeToken, "--build", "b1"}, 2, "go together"},
		{"revoke crl flag remote", []string{"revoke", "--server", e.url, "--token-file", e.revokeToken, "--serial", "ab", "--crl-next-update", "1d"}, 2, "--crl-next-update is for the local mode"},
		{"verify crl flag remote", []string{"certify", "verify", "r.json", "--server", e.url, "--token-file", e.ciToken, "--crl", "x"}, 2, "--crl is for the local mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if strings.Contains(stdout+stderr, token[len(token)-20:]) {
				t.Errorf("the token secret was printed")
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed issuance wrote %s", out)
			}
		})
	}
}
