package threat

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The id starts with its time in milliseconds, so ids of later events sort
// after earlier ones (what keeps a receiver's id index append-only).
func TestEventIDTimeOrdered(t *testing.T) {
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	a := newEventIDAt(at)
	b := newEventIDAt(at.Add(time.Millisecond))
	if a >= b {
		t.Fatalf("%s does not sort before %s", a, b)
	}
	if got, want := strings.ReplaceAll(a, "-", "")[:12], fmt.Sprintf("%012x", at.UnixMilli()); got != want {
		t.Fatalf("time part %s, want %s", got, want)
	}
}
