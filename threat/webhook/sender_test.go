package webhook

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	for _, o := range []Options{
		{MinBackoff: time.Millisecond, MaxBackoff: time.Second},
		{MinBackoff: time.Hour, MaxBackoff: 1000 * time.Hour}, // doubling would overflow int64 ns
		{MinBackoff: time.Second, MaxBackoff: time.Second},
	} {
		s := &Sink{opts: o}
		prevCap := time.Duration(0)
		for n := 1; n <= 100; n++ {
			d := s.backoff(n, nil)
			if d < o.MinBackoff/2 || d > o.MaxBackoff {
				t.Fatalf("%+v: backoff(%d) = %v, outside [%v, %v]", o, n, d, o.MinBackoff/2, o.MaxBackoff)
			}
			if d < prevCap/2 {
				t.Fatalf("%+v: backoff(%d) = %v shrank below half of the previous cap %v", o, n, d, prevCap)
			}
			prevCap = min(max(prevCap*2, o.MinBackoff), o.MaxBackoff)
		}
		retry := &sendError{err: errors.New("503"), retryAfter: 3 * o.MaxBackoff}
		if d := s.backoff(1, retry); d != o.MaxBackoff {
			t.Errorf("%+v: Retry-After beyond MaxBackoff gave %v, want %v", o, d, o.MaxBackoff)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "7": 7 * time.Second, "-1": 0, "soon": 0} {
		if got := retryAfter(in); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	if d := retryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); d < 50*time.Minute || d > time.Hour {
		t.Errorf("retryAfter(an HTTP date in an hour) = %v", d)
	}
}
