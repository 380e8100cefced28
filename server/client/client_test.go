package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const clientTestToken = "mcc_0123456789abcdef_SECRETSECRETSECRETSECRETSECRETSECRETSECRE"

func clientFor(t *testing.T, url string) (*Client, *[]time.Duration) {
	t.Helper()
	c, err := New(Options{Server: url, Token: clientTestToken})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	c.wait = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	return c, &waits
}

func TestClientOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no server", Options{Token: clientTestToken}, "no server URL"},
		{"plain http off loopback", Options{Server: "http://mcc.example.com", Token: clientTestToken}, "plain http is refused"},
		{"credentials in the URL", Options{Server: "https://u:pw@mcc.example.com", Token: clientTestToken}, "no user info"},
		{"other scheme", Options{Server: "ftp://mcc.example.com", Token: clientTestToken}, "want https://"},
		{"no token", Options{Server: "https://mcc.example.com"}, "no API token"},
		{"missing token file", Options{Server: "https://mcc.example.com", TokenFile: filepath.Join(dir, "none")}, "reading the token file"},
		{"not a token", Options{Server: "https://mcc.example.com", TokenFile: write("t1", "password123\n")}, "start with mcc_"},
		{"two lines", Options{Server: "https://mcc.example.com", TokenFile: write("t2", clientTestToken+"\nmore\n")}, "more than the token"},
		{"bad CA file", Options{Server: "https://mcc.example.com", Token: clientTestToken, CAFile: write("ca", "not pem")}, "server CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "password123") {
				t.Errorf("a secret in the error: %v", err)
			}
		})
	}
	// One trailing newline is fine; loopback http is fine.
	if _, err := New(Options{Server: "http://127.0.0.1:8700/", TokenFile: write("t3", clientTestToken+"\n")}); err != nil {
		t.Errorf("token file with a newline: %v", err)
	}
}

// TestClientProblemsAndRetries against a real HTTP server: problems come
// back typed; 429 is retried after Retry-After for safe requests only; a
// proxy's HTML page is an error without its body; redirects are not
// followed; the token goes only into the Authorization header.
func TestClientProblemsAndRetries(t *testing.T) {
	var calls atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+clientTestToken {
			t.Errorf("Authorization header %q", r.Header.Get("Authorization"))
		}
		switch r.URL.Path {
		case "/v1/certificates/limited":
			if calls.Load() < 3 {
				w.Header().Set("Retry-After", "7")
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(429)
				w.Write([]byte(`{"type":"urn:mcc:problem:rate-limited","title":"Too many requests","status":429,"detail":"slow down"}`))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"serial":"limited","status":"valid"}`))
		case "/v1/revocations", "/v1/fusion-sets/s/builds":
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(503)
			w.Write([]byte(`{"type":"urn:mcc:problem:unavailable","status":503,"detail":"later"}`))
		case "/v1/certificates/gone":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(422)
			w.Write([]byte(`{"type":"urn:mcc:problem:invalid-request","status":422,"detail":"bad","errors":[{"field":"serials[2]","detail":"unknown"}]}`))
		case "/v1/certificates/proxy":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			w.Write([]byte("<html>secret proxy page</html>"))
		case "/v1/certificates/redirect":
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		}
	}))
	defer hs.Close()
	ctx := context.Background()

	c, waits := clientFor(t, hs.URL)
	got, err := c.Certificate(ctx, "limited")
	if err != nil || got.Serial != "limited" {
		t.Fatalf("after 429s: %+v %v", got, err)
	}
	if len(*waits) != 2 || (*waits)[0] != 7*time.Second {
		t.Errorf("waits %v, want two of 7s (Retry-After)", *waits)
	}

	_, err = c.Certificate(ctx, "gone")
	var p *Problem
	if !IsProblem(err, "invalid-request") || !errors.As(err, &p) || p.Errors[0].Field != "serials[2]" || !strings.Contains(err.Error(), "serials[2]: unknown") {
		t.Errorf("problem: %v", err)
	}
	if _, err := c.Certificate(ctx, "proxy"); err == nil || strings.Contains(err.Error(), "secret proxy page") || !strings.Contains(err.Error(), "502") {
		t.Errorf("proxy page: %v", err)
	}
	if _, err := c.Certificate(ctx, "redirect"); err == nil {
		t.Error("a redirect was followed or accepted")
	}

	// A build without an idempotency key is not retried (it could issue
	// twice); with one it is, and so is a revocation.
	c, waits = clientFor(t, hs.URL)
	before := calls.Load()
	if _, err := c.IssueBuild(ctx, "s", BuildRequest{AppID: "a", BuildID: "b"}, ""); !IsProblem(err, "unavailable") {
		t.Errorf("build: %v", err)
	}
	if n := calls.Load() - before; n != 1 {
		t.Errorf("a build without a key was sent %d times", n)
	}
	before = calls.Load()
	c.IssueBuild(ctx, "s", BuildRequest{AppID: "a", BuildID: "b"}, "key-1")
	if n := calls.Load() - before; n != 3 {
		t.Errorf("a build with a key was sent %d times, want 3 (2 retries)", n)
	}
	before = calls.Load()
	c.Revoke(ctx, RevokeRequest{Serial: "ab"})
	if n := calls.Load() - before; n != 3 {
		t.Errorf("a revocation was sent %d times, want 3", n)
	}
}
