package quickstart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary run one quickstart (see TestMain) instead
// of the tests, so its stdout and stderr can be read as a terminal user
// sees them.
const childEnv = "MCC_QUICKSTART_TEST_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		os.Exit(runChild(args))
	}
	os.Exit(m.Run())
}

// runChild runs the quickstart with dir and listen from args ("DIR\nADDR")
// until SIGINT, as `mcc quickstart` does.
func runChild(args string) int {
	dir, listen, _ := strings.Cut(args, "\n")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, Options{Dir: dir, Listen: listen, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, "mcc quickstart:", err)
		return 1
	}
	return 0
}

// TestQuickstartOutputHasNoCaddyLogLines runs the quickstart in a child
// process and reads its stdout and stderr: only the quickstart's own lines,
// no Caddy log line (JSON or console format) such as "redirected default
// logger"; Caddy's log goes to caddy.log.
func TestQuickstartOutputHasNoCaddyLogLines(t *testing.T) {
	isolateCaddyDirs(t)
	dir := filepath.Join(t.TempDir(), "qs")
	listen := net.JoinHostPort("127.0.0.1", freePort(t))

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir+"\n"+listen)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(stdout.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-done:
			t.Fatalf("the quickstart exited before it was ready: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
		case <-deadline:
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("the quickstart did not print its instructions within 2 minutes\nstdout:\n%s\nstderr:\n%s", &stdout, &stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// One request, so the handler, the sinks and the access path log too.
	if c, err := net.DialTimeout("tcp", listen, 5*time.Second); err == nil {
		c.Close()
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the quickstart exited with %v after Ctrl-C\nstderr:\n%s", err, &stderr)
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		t.Fatalf("the quickstart did not stop within a minute of Ctrl-C")
	}

	if s := stderr.String(); s != "" {
		t.Errorf("the quickstart wrote to stderr (Caddy's log belongs in %s):\n%s", CaddyLogFile, s)
	}
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if json.Valid([]byte(line)) && strings.HasPrefix(line, "{") ||
			strings.Contains(line, "redirected default logger") || strings.Contains(line, "\tINFO\t") {
			t.Errorf("stdout carries a Caddy log line: %s", line)
		}
	}
	logData, err := os.ReadFile(filepath.Join(dir, CaddyLogFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logData, []byte("redirected default logger")) {
		t.Errorf("%s lacks Caddy's early log lines (they must be kept, in the log file):\n%s", CaddyLogFile, logData)
	}
}
