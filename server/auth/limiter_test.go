package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiterPerToken(t *testing.T) {
	l := NewLimiter(2, 3)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("over the burst: ok %v, retry after %s (want refused, about 500ms)", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another token is limited by the first")
	}
	// Refused requests cost nothing: after the wait one more is allowed.
	for i := 0; i < 10; i++ {
		l.Allow("a")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after waiting the retry time")
	}
}

func TestLimiterOff(t *testing.T) {
	l := NewLimiter(0, 0)
	for i := 0; i < 1000; i++ {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("a limiter with rate 0 refused")
		}
	}
	var nilLimiter *Limiter
	if ok, _ := nilLimiter.Allow("a"); !ok {
		t.Fatal("a nil limiter refused")
	}
}

// Idle buckets are dropped once the map is large; busy ones are kept.
func TestLimiterSweep(t *testing.T) {
	l := NewLimiter(10, 10)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	for i := 0; i < limiterSweepAt; i++ {
		l.Allow(fmt.Sprint("idle-", i))
	}
	for i := 0; i < 10; i++ {
		l.Allow("busy")
	}
	now = now.Add(2 * time.Second) // past the 1s refill of the idle ones
	for i := 0; i < 9; i++ {
		l.Allow("busy")
	}
	l.Allow("new")
	if n := len(l.buckets); n != 2 {
		t.Fatalf("%d buckets after the sweep, want busy and new", n)
	}
}

// Keys that are not bounded by a table (client addresses) cannot grow the
// map past its bound, however fast they come: an attacker with many
// addresses costs leniency, not memory.
func TestLimiterBoundedUnderManyKeys(t *testing.T) {
	l := NewLimiter(1, 5) // 5 s refill: nothing goes idle during the test
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	for i := 0; i < 3*limiterMaxKeys; i++ {
		l.Allow(fmt.Sprint("addr-", i))
		if n := len(l.buckets); n > limiterMaxKeys {
			t.Fatalf("%d buckets after %d keys, over the bound %d", n, i+1, limiterMaxKeys)
		}
	}
	// A key seen just now is still limited, unless the bound dropped it.
	for i := 0; i < 5; i++ {
		l.Allow("steady")
	}
	if ok, _ := l.Allow("steady"); ok {
		t.Fatal("a key over its burst was allowed")
	}
}
