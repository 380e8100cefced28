// Package redistest runs a real redis-server for tests: a private instance on
// a free loopback port, with persistence off, stopped when the test ends.
// Stop and Start let a test take Redis away and bring it back on the same
// port, Pause and Resume freeze and thaw it, for outage tests.
package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer its first PING.
// Generous: tests share a loaded machine.
const startTimeout = 20 * time.Second

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	// tls is the client side of a NewTLS server; nil for plain TCP.
	tls *tls.Config

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed when proc has exited
}

// New starts a redis-server for t and stops it in t.Cleanup. It fails the
// test (it never skips it) when redis-server is not installed.
func New(t testing.TB) *Server {
	t.Helper()
	return newServer(t, false)
}

// NewTLS is New with TLS only: the server presents a certificate for
// 127.0.0.1 from a CA made for the test (see TLSConfig) and URL is rediss://.
func NewTLS(t testing.TB) *Server {
	t.Helper()
	return newServer(t, true)
}

func newServer(t testing.TB, withTLS bool) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH (%v): install it, e.g. `apt-get install -y redis-server`", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	if withTLS {
		if s.tls, err = writeTLSFiles(s.dir); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	t.Cleanup(s.Stop)
	// The free port is found by binding and releasing it, so another
	// process may take it in between: try a few ports before giving up.
	var lastErr error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL (rediss:// for NewTLS) for database 0 of the server.
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// TLSConfig is a client configuration that trusts a NewTLS server's CA
// (nil for a plain server). Each call returns a new copy.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Clone()
}

// Start starts the server again on the same port after Stop. Call it from
// the test's goroutine: it fails the test when the server does not come up.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restarting: %v", err)
	}
}

// Stop stops the server and waits for it to exit: clients see their
// connections close and new ones refused. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	// SIGCONT first: a paused server cannot act on SIGTERM.
	_ = s.proc.Signal(syscall.SIGCONT)
	_ = s.proc.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.proc.Kill()
		<-s.exited
	}
	s.proc = nil
}

// Pause freezes the server (SIGSTOP): connections stay open and new ones
// are accepted by the kernel, but nothing answers, like a Redis stuck or
// cut off by a network that drops packets. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatalf("redistest: %v to a stopped server", sig)
	}
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Do sends one command to the server on a fresh connection and returns the
// first line of the reply ("+OK", ":42", "-ERR ..."). It is for set-up such
// as CONFIG SET; tests talk to Redis through a real client otherwise.
func (s *Server) Do(args ...string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if s.tls != nil {
		c, err = tls.DialWithDialer(d, "tcp", s.Addr(), s.tls)
	} else {
		c, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("redis-server on port %d is already running", s.port)
	}
	out := new(syncBuffer)
	args := []string{"--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", s.dir, "--daemonize", "no"}
	if s.tls != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", filepath.Join(s.dir, serverCertFile), "--tls-key-file", filepath.Join(s.dir, serverKeyFile),
			"--tls-ca-cert-file", filepath.Join(s.dir, caCertFile), "--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for !s.answers() {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited before answering on port %d (%v): %s", s.port, waitErr, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server did not answer PING on port %d within %s: %s", s.port, startTimeout, out.String())
		}
	}
	s.proc, s.exited = cmd.Process, exited
	return nil
}

// answers reports whether the server replies +PONG to PING.
func (s *Server) answers() bool {
	reply, err := s.Do("PING")
	return err == nil && reply == "+PONG"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer collects the server's output for error messages; the process
// writes it from exec's copying goroutine while start may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
