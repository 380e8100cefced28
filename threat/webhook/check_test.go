package webhook

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Check refuses headers that would break the request or smuggle another
// header, and never repeats a header value.
func TestCheckHeaders(t *testing.T) {
	const secret = "hunter2"
	for _, tc := range []struct {
		name, value, want string
	}{
		{"Authorization", "Bearer " + secret, ""},
		{"X-Api-Key", secret + "\twith tab", ""},
		{"Authorization", "Bearer " + secret + "\r\nX-Evil: 1", "control character"},
		{"Authorization", secret + "\x00", "control character"},
		{"X Bad", secret, "not an HTTP token"},
		{"X-Bad:", secret, "not an HTTP token"},
		{"", secret, "empty name"},
		{"X-Empty", "", "empty value"},
		{"content-type", "text/plain", "cannot be configured"},
		{"Transfer-Encoding", "chunked", "cannot be configured"},
		{"Host", "evil.example", "cannot be configured"},
	} {
		err := Options{URL: "https://h/x", Headers: map[string]string{tc.name: tc.value}}.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("%q: error shows the value: %v", tc.name, err)
		}
	}
}

// A receiver that redirects does not get the batch delivered elsewhere:
// the token would go with it. The 3xx is a failure, retried, and the
// events stay spooled.
func TestRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	defer other.Close()
	var posts atomic.Int32
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	s := newSink(t, testOptions(redirector.URL, t.TempDir()))
	g := &gateway{t: t}
	g.emit(s, 3, 3)
	deadline := time.Now().Add(waitFor)
	for posts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d POSTs, want a retry after the redirect", posts.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
	if st := s.Stats(); st.Delivered != 0 || st.Pending != 3 {
		t.Fatalf("stats %+v, want 3 pending, none delivered", st)
	}
}
