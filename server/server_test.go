package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testclock"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// serverPublish publishes a minimal fusion set (creating its CA) through
// the real API and returns the admin bearer token.
func serverPublish(t *testing.T, s *server.Server, url, set string) string {
	t.Helper()
	secret, _, err := s.Tokens().Create(context.Background(), "admin-"+set, []auth.Scope{auth.ScopeAdmin}, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	doc := "fusion_sets:\n  - id: " + set + "\n    app_id: com.example.app\n    mode: defense\n"
	req, _ := http.NewRequest("PUT", url+"/v1/fusion-sets/"+set, strings.NewReader(doc))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("If-None-Match", "*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publishing %s: %s", set, resp.Status)
	}
	return secret
}

func TestServerOpenConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := server.Open(ctx, server.Config{}); err == nil {
		t.Error("no database: accepted")
	}
	_, err := server.Open(ctx, server.Config{DatabaseURL: "postgres://u@127.0.0.1:1/db"})
	if err == nil || !strings.Contains(err.Error(), "--kek-file") {
		t.Errorf("--database without a KEK file: %v", err)
	}
	dir := t.TempDir()
	s, err := server.Open(ctx, server.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, server.KEKFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK: %v %v", fi, err)
	}
	if s.DB().Dialect() != store.SQLite {
		t.Errorf("dialect %s", s.DB().Dialect())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestServerRefusesAnotherKEK: once a CA key is sealed, a start with
// another key-encryption key (or none, where a fresh one would be made)
// fails at Open instead of at the first issuance.
func TestServerRefusesAnotherKEK(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := server.Open(ctx, server.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	serverPublish(t, s, hs.URL, "bank-prod")
	hs.Close()
	s.Close()

	other := filepath.Join(t.TempDir(), "other.kek")
	if _, err := server.Open(ctx, server.Config{DataDir: dir, KEKFile: other}); err == nil {
		t.Error("a missing KEK file beside sealed keys: accepted")
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("a database with sealed keys got a fresh KEK file")
	}
	if _, err := keys.LoadOrCreate(other); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Open(ctx, server.Config{DataDir: dir, KEKFile: other}); err == nil || !strings.Contains(err.Error(), "does not open the stored CA keys") {
		t.Errorf("another KEK: %v", err)
	}
	os.Rename(filepath.Join(dir, server.KEKFileName), filepath.Join(dir, "moved.kek"))
	if _, err := server.Open(ctx, server.Config{DataDir: dir}); err == nil {
		t.Error("a missing KEK beside sealed keys: accepted (a fresh one would open nothing)")
	}
	os.Rename(filepath.Join(dir, "moved.kek"), filepath.Join(dir, server.KEKFileName))
	s, err = server.Open(ctx, server.Config{DataDir: dir})
	if err != nil {
		t.Fatalf("the right KEK: %v", err)
	}
	s.Close()
}

// TestServerRunResignsCRLs: the background loop signs a set's first CRL
// and re-signs it once the clock passes half its validity.
func TestServerRunResignsCRLs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := testclock.New(time.Now())
	s, err := server.Open(ctx, server.Config{DataDir: t.TempDir(), Now: clock.Now, CRLRefresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	serverPublish(t, s, hs.URL, "bank-prod")
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	waitCRL := func(after int64) store.CRL {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := s.DB().CRL(ctx, "bank-prod"); err == nil && c.Number > after {
				return c
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no CRL with a number above %d", after)
		return store.CRL{}
	}
	first := waitCRL(0)
	clock.Add(first.NextUpdate.Sub(first.ThisUpdate)/2 + time.Minute)
	second := waitCRL(first.Number)
	if !second.NextUpdate.After(first.NextUpdate) {
		t.Errorf("re-signed CRL: next update %s, not after %s", second.NextUpdate, first.NextUpdate)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestServerRateLimit: the configured per-token limit answers 429 with
// Retry-After; a negative limit turns it off.
func TestServerRateLimit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		rate    float64
		want429 bool
	}{{0.001, true}, {-1, false}} {
		s, err := server.Open(ctx, server.Config{DataDir: t.TempDir(), RateLimit: tc.rate, RateBurst: 1})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler())
		secret, _, err := s.Tokens().Create(ctx, "reader", []auth.Scope{auth.ScopeRead}, 0, "test")
		if err != nil {
			t.Fatal(err)
		}
		got429 := false
		for i := 0; i < 5; i++ {
			req, _ := http.NewRequest("GET", hs.URL+"/v1/certificates", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				got429 = true
				if resp.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
			}
		}
		if got429 != tc.want429 {
			t.Errorf("rate %v: 429 seen %v, want %v", tc.rate, got429, tc.want429)
		}
		hs.Close()
		s.Close()
	}
}
