package quickstart

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// soReusePort is SO_REUSEPORT on Linux (the syscall package lacks it; the
// value is 15 on x86 and arm, the architectures the tests run on).
const soReusePort = 0xf

// TestRefusesPortServedWithReusePort: another process already serves the
// port with SO_REUSEPORT (as Caddy itself does on Linux). Caddy would bind
// next to it and the kernel would split the connections; the quickstart
// must refuse to start instead, and say why.
func TestRefusesPortServedWithReusePort(t *testing.T) {
	isolateCaddyDirs(t)
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	other, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// The other server answers, so a quickstart that started anyway would
	// share the port with it.
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out := new(syncBuffer)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{Dir: filepath.Join(t.TempDir(), "qs"), Listen: other.Addr().String(), Out: out})
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "already in use by another process") || !strings.Contains(err.Error(), other.Addr().String()) {
			t.Fatalf("Run on a port another process serves = %v, want an error naming the port as in use", err)
		}
	case <-time.After(50 * time.Second):
		cancel()
		<-errc
		t.Fatalf("the quickstart started on a port another process serves (SO_REUSEPORT); output:\n%s", out)
	}
	if strings.Contains(out.String(), "Press Ctrl-C") {
		t.Errorf("the quickstart printed its instructions although it did not start:\n%s", out)
	}
}
