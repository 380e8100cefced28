package main

import (
	"context"
	"testing"
	"time"
)

// BenchmarkFusionSetServeHTTPCached is the handler's cost per request on
// the cached path (a real mTLS ConnectionState, a valid certificate):
//
//	go test ./bench/caddy -run '^$' -bench FusionSetServeHTTPCached -benchtime 1s
func BenchmarkFusionSetServeHTTPCached(b *testing.B) {
	f := startFixture(b)
	bench, err := handlerBenchmark(f)
	if err != nil {
		b.Fatal(err)
	}
	bench(b)
}

// TestFixtureServesBothTargets checks the benchmark's setup: both sites
// answer the demo certificate, and only one of them runs fusion_set.
func TestFixtureServesBothTargets(t *testing.T) {
	f := startFixture(t)
	for _, url := range []string{f.nativeURL, f.fusionURL} {
		r := runLoad(context.Background(), f.client, url, 2, 300*time.Millisecond, true)
		if r.requests == 0 || r.errors != 0 {
			t.Errorf("%s: %d ok, %d failed (first: %v)", url, r.requests, r.errors, r.firstErr)
		}
		r = runLoad(context.Background(), f.client, url, 1, 300*time.Millisecond, false)
		if r.requests == 0 || r.errors != 0 {
			t.Errorf("%s with a handshake per request: %d ok, %d failed (first: %v)", url, r.requests, r.errors, r.firstErr)
		}
	}
	if _, err := handlerBenchmark(f); err != nil {
		t.Fatal(err)
	}
}

func startFixture(tb testing.TB) *fixture {
	tb.Helper()
	home := tb.TempDir()
	tb.Setenv("HOME", home)
	tb.Setenv("XDG_DATA_HOME", home+"/data")
	tb.Setenv("XDG_CONFIG_HOME", home+"/config")
	f, err := newFixture(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := f.stop(); err != nil {
			tb.Error(err)
		}
	})
	return f
}
