package doctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// blockTimeout bounds one block: the README's first blocks compile mcc and
// Caddy in the copy of the repository.
const blockTimeout = 10 * time.Minute

// session runs the shell blocks of one README, each in a fresh bash in the
// README's directory, and keeps the servers its background lines started
// until stop.
type session struct {
	t     *testing.T
	dir   string   // the README's directory in the copy
	env   []string // the environment every block gets
	bgDir string   // logs, commands and pids of background lines
	nbg   int
}

func newSession(t *testing.T, dir string, env []string) *session {
	s := &session{t: t, dir: dir, env: env, bgDir: t.TempDir()}
	t.Cleanup(s.stop)
	return s
}

// script turns a block into a bash script: markers applied, each command
// echoed (set -x) and the first failure fatal.
func (s *session) script(b block) (string, error) {
	var sb strings.Builder
	sb.WriteString("set -m\nset -eo pipefail\nPS4='+ $ '\nset -x\n")
	for _, line := range logicalLines(b.lines) {
		kind, err := classify(line)
		if err != nil {
			return "", fmt.Errorf("%s: %w", b.where(), err)
		}
		switch kind {
		case skipLine:
			for _, l := range strings.Split(line, "\n") {
				sb.WriteString("# (skipped) " + l + "\n")
			}
		case backgroundLine:
			s.nbg++
			n := strconv.Itoa(s.nbg)
			log := filepath.Join(s.bgDir, n+".log")
			if err := os.WriteFile(filepath.Join(s.bgDir, n+".cmd"), []byte(line), 0o644); err != nil {
				return "", err
			}
			// The group gets its own process group (set -m), so stop
			// reaches everything it starts (go run and its program).
			fmt.Fprintf(&sb, "{ %s\n} >%s 2>&1 </dev/null &\n", line, shellQuote(log))
			fmt.Fprintf(&sb, "echo $! >>%s\n", shellQuote(filepath.Join(s.bgDir, "pids")))
			fmt.Fprintf(&sb, "%s $! %s\n", shellQuote(helperPath()), shellQuote(log))
		default:
			sb.WriteString(line + "\n")
		}
	}
	return sb.String(), nil
}

// run runs every block in order and fails the test at the first block
// that fails, with its output and the logs of the background lines.
func (s *session) run(blocks []block) {
	t := s.t
	t.Helper()
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("%s: block not run (%s)", b.where(), b.skip)
			continue
		}
		script, err := s.script(b)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), blockDeadline(t))
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		// On a timeout, stop the whole tree: a server a block started in
		// the foreground by mistake must not outlive the test.
		cmd.Cancel = func() error {
			killTree(cmd.Process.Pid)
			return nil
		}
		cmd.Dir = s.dir
		cmd.Env = append(s.env, helperEnv+"=1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		// Whatever a block leaves running must not hold the test.
		cmd.WaitDelay = 10 * time.Second
		start := time.Now()
		err = cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("%s: the block failed (%v) after %s.\nOutput:\n%s%s", b.where(), err, time.Since(start).Round(time.Millisecond), out.String(), s.backgroundLogs())
		}
		t.Logf("%s: ok in %s\n%s", b.where(), time.Since(start).Round(time.Millisecond), out.String())
	}
}

// background returns the log of the background line whose command
// contains substr.
func (s *session) background(substr string) (cmd, logPath string, ok bool) {
	for i := 1; i <= s.nbg; i++ {
		n := strconv.Itoa(i)
		c, err := os.ReadFile(filepath.Join(s.bgDir, n+".cmd"))
		if err == nil && strings.Contains(string(c), substr) {
			return string(c), filepath.Join(s.bgDir, n+".log"), true
		}
	}
	return "", "", false
}

func (s *session) backgroundLogs() string {
	var sb strings.Builder
	for i := 1; i <= s.nbg; i++ {
		n := strconv.Itoa(i)
		c, _ := os.ReadFile(filepath.Join(s.bgDir, n+".cmd"))
		l, _ := os.ReadFile(filepath.Join(s.bgDir, n+".log"))
		fmt.Fprintf(&sb, "\n--- background: %s\n%s", c, tail(l, 4000))
	}
	return sb.String()
}

// blockDeadline is blockTimeout, or less when the test binary's own
// -timeout would end it first (it panics, and nothing is cleaned up).
func blockDeadline(t *testing.T) time.Duration {
	d := blockTimeout
	if end, ok := t.Deadline(); ok {
		if left := time.Until(end) - 30*time.Second; left < d {
			d = max(left, time.Second)
		}
	}
	return d
}

// killTree sends SIGKILL to pid and all its descendants.
func killTree(pid int) {
	for _, p := range descendants(pid) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// stop sends SIGINT to the process group of every background line, as
// Ctrl-C in its terminal would, and SIGKILL to what is left after 20s.
func (s *session) stop() {
	data, err := os.ReadFile(filepath.Join(s.bgDir, "pids"))
	if err != nil {
		return
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	os.Remove(filepath.Join(s.bgDir, "pids"))
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGINT)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for groupAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if groupAlive(pid) {
			s.t.Logf("process group %d did not stop within 20s of SIGINT; killing it", pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// groupAlive reports whether any live (not zombie) process is in process
// group pgid.
func groupAlive(pgid int) bool {
	for _, p := range procs() {
		if p.pgid == pgid && p.state != 'Z' {
			return true
		}
	}
	return false
}

func tail(b []byte, n int) string {
	if len(b) > n {
		return "…" + string(b[len(b)-n:])
	}
	return string(b)
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// proc is one line of /proc/PID/stat.
type proc struct {
	pid, ppid, pgid int
	state           byte
}

func procs() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		out = append(out, proc{pid: pid, ppid: ppid, pgid: pgid, state: f[0][0]})
	}
	return out
}

// helperEnv makes the test binary act as the wait-for-listen helper of
// background lines (see TestMain).
const helperEnv = "MCC_DOCTEST_WAIT_LISTEN"

func helperPath() string {
	p, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return p
}

// waitListen is the helper: it waits until process pid or one of its
// descendants listens on a TCP port and the set of listening ports has not
// changed for a while, and fails if the process exits first.
func waitListen(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: PID LOGFILE")
		return 2
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	const settle = 1500 * time.Millisecond
	deadline := time.Now().Add(blockTimeout)
	last, since := "", time.Now()
	for time.Now().Before(deadline) {
		tree := descendants(pid)
		if len(tree) == 0 {
			log, _ := os.ReadFile(args[1])
			fmt.Fprintf(os.Stderr, "the background line exited before it listened; its output:\n%s\n", tail(log, 4000))
			return 1
		}
		ports := listening(tree)
		if ports != last {
			last, since = ports, time.Now()
		} else if ports != "" && time.Since(since) >= settle {
			fmt.Fprintf(os.Stderr, "(background line listening on %s)\n", ports)
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(args[1])
	fmt.Fprintf(os.Stderr, "the background line did not listen within %s; its output:\n%s\n", blockTimeout, tail(log, 4000))
	return 1
}

// descendants returns pid and its live descendants.
func descendants(pid int) []int {
	children := map[int][]int{}
	alive := map[int]bool{}
	for _, p := range procs() {
		children[p.ppid] = append(children[p.ppid], p.pid)
		alive[p.pid] = p.state != 'Z'
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if alive[p] {
			out = append(out, p)
		}
		queue = append(queue, children[p]...)
	}
	return out
}

// listening returns the TCP addresses the processes listen on, sorted.
func listening(pids []int) string {
	inodes := map[string]bool{}
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err == nil && strings.HasPrefix(target, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
			}
		}
	}
	var addrs []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			_, portHex, _ := strings.Cut(f[1], ":")
			port, _ := strconv.ParseUint(portHex, 16, 16)
			addrs = append(addrs, strconv.FormatUint(port, 10))
		}
	}
	sort.Strings(addrs)
	return strings.Join(addrs, ",")
}
