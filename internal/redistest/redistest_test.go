package redistest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

func TestStopStart(t *testing.T) {
	s := New(t)
	if reply, err := s.Do("SET", "k", "v"); err != nil || reply != "+OK" {
		t.Fatalf("SET = %q, %v", reply, err)
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Errorf("URL = %q", s.URL())
	}
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("the server answers after Stop")
	}
	s.Stop() // a second Stop does nothing
	s.Start()
	if reply, err := s.Do("GET", "k"); err != nil || reply != "$-1" {
		t.Fatalf("GET after restart = %q, %v; want nil (persistence is off)", reply, err)
	}
}

// fatalTB records Fatalf and ends the goroutine, like testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinaryFailsClearly(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(f)
		f.msg = "New returned"
	}()
	<-done
	if !strings.Contains(f.msg, "redis-server not found") || !strings.Contains(f.msg, "apt-get install -y redis-server") {
		t.Fatalf("message = %q, want a clear install hint", f.msg)
	}
}

func TestTLS(t *testing.T) {
	s := NewTLS(t)
	if !strings.HasPrefix(s.URL(), "rediss://127.0.0.1:") || s.TLSConfig() == nil {
		t.Fatalf("URL = %q, TLSConfig = %v", s.URL(), s.TLSConfig())
	}
	if reply, err := s.Do("PING"); err != nil || reply != "+PONG" {
		t.Fatalf("PING over TLS = %q, %v", reply, err)
	}
}
