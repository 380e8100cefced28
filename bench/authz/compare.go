package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// Budgets for ext_authz against its floor (docs/ARCHITECTURE.md, and the
// README's performance table): mcc's closed-loop throughput at least this
// share of the no-op server's, and its p99 at the fixed rate at most this
// multiple of the no-op's.
const (
	throughputFloor = 0.9
	p99Ceiling      = 1.3
)

// compareOptions are the -compare settings; the rate and duration of each
// phase, the connections and the concurrency are the same for both servers.
type compareOptions struct {
	rate        int
	duration    time.Duration
	warmup      time.Duration
	conns       int
	concurrency int
	rounds      int
	mccBinary   string
}

// target is one server under test, out of process, with its own clients.
type target struct {
	name    string
	pid     int
	clients []authv3.AuthorizationClient
}

// roundResult holds one server's figures in one round.
type roundResult struct {
	throughput float64       // closed-loop checks/s
	cpuPer     time.Duration // the server's CPU time per closed-loop check; 0 when unknown
	p99        time.Duration // at the fixed rate
	open       result
}

// saturated reports whether the fixed rate was not achieved: then the
// machine, not the server, set the latency, and the round is not compared.
func (r roundResult) saturated(rate int) bool { return r.open.achieved < 0.97*float64(rate) }

// runCompare measures the no-op server and a real `mcc authz`, each in its
// own process so both pay the same loopback and scheduling costs, with the
// same client and settings. Each round measures both; the order alternates
// from one round to the next, so drift on a shared machine (another build
// starting, the CPU clocking down) lands on both sides. The ratios reported
// are the medians of the per-round ratios.
func runCompare(ctx context.Context, out io.Writer, o compareOptions) error {
	if o.rounds < 1 || o.concurrency < 1 {
		return errors.New("-rounds and -concurrency must be positive")
	}
	dir, err := os.MkdirTemp("", "mcc-bench-authz-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	targets, req, stop, err := startServers(ctx, out, dir, o)
	if err != nil {
		return err
	}
	defer stop()

	fmt.Fprintf(out, "ext_authz floor: no-op gRPC server vs mcc authz, both out of process on loopback; %d connection(s), %d closed-loop callers, %d checks/s open loop, %s per phase, %d rounds, %d CPUs\n",
		o.conns, o.concurrency, o.rate, o.duration, o.rounds, runtime.NumCPU())
	for _, t := range targets { // warm both: connections, caches, the Go runtime's heap
		closedLoop(ctx, t.clients, req, o.concurrency, o.warmup)
		loadRun(ctx, t.clients, req, o.rate, o.warmup)
	}

	var tputRatios, p99Ratios, cpuRatios []float64
	raw := map[string][]roundResult{}
	for round := range o.rounds {
		order := []target{targets[0], targets[1]}
		if round%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		got := map[string]roundResult{}
		for _, t := range order {
			r, err := measureTarget(ctx, t, req, o)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, t.name, err)
			}
			got[t.name] = r
			raw[t.name] = append(raw[t.name], r)
		}
		n, m := got["noop"], got["mcc"]
		tputRatios = append(tputRatios, m.throughput/n.throughput)
		if n.cpuPer > 0 && m.cpuPer > 0 {
			cpuRatios = append(cpuRatios, float64(m.cpuPer)/float64(n.cpuPer))
		}
		p99Note := ""
		if n.saturated(o.rate) || m.saturated(o.rate) {
			p99Note = "  (rate not achieved: p99 left out)"
		} else {
			p99Ratios = append(p99Ratios, float64(m.p99)/float64(n.p99))
		}
		fmt.Fprintf(out, "round %d (%s first): closed loop noop %6.0f/s %5.1fµs CPU, mcc %6.0f/s %5.1fµs CPU, ratio %.2f | %d/s: p50 noop %s mcc %s, p99 noop %s mcc %s, ratio %.2f, achieved noop %.0f/s mcc %.0f/s%s\n",
			round+1, order[0].name, n.throughput, us(n.cpuPer), m.throughput, us(m.cpuPer), m.throughput/n.throughput, o.rate,
			n.open.pct(0.5).Round(time.Microsecond), m.open.pct(0.5).Round(time.Microsecond),
			n.p99.Round(time.Microsecond), m.p99.Round(time.Microsecond), float64(m.p99)/float64(n.p99),
			n.open.achieved, m.open.achieved, p99Note)
	}

	// Medians per server; p99 only over the rounds compared (both servers
	// achieved the rate).
	med := func(name string, f func(roundResult) float64, pairedOnly bool) float64 {
		var v []float64
		for i, r := range raw[name] {
			if pairedOnly && (raw["noop"][i].saturated(o.rate) || raw["mcc"][i].saturated(o.rate)) {
				continue
			}
			if x := f(r); x > 0 {
				v = append(v, x)
			}
		}
		return median(v)
	}
	tput := func(r roundResult) float64 { return r.throughput }
	cpu := func(r roundResult) float64 { return float64(r.cpuPer) }
	p99 := func(r roundResult) float64 { return float64(r.p99) }
	fmt.Fprintf(out, "medians: closed loop noop %.0f/s, mcc %.0f/s; server CPU per check noop %.1fµs, mcc %.1fµs; p99 at %d/s noop %s, mcc %s\n",
		med("noop", tput, false), med("mcc", tput, false), us(time.Duration(med("noop", cpu, false))), us(time.Duration(med("mcc", cpu, false))), o.rate,
		time.Duration(med("noop", p99, true)).Round(time.Microsecond), time.Duration(med("mcc", p99, true)).Round(time.Microsecond))
	tr := median(tputRatios)
	fmt.Fprintf(out, "throughput mcc/noop %.2f× (target >= %.1f×: %s), median of %d paired rounds\n",
		tr, throughputFloor, verdict(tr >= throughputFloor), len(tputRatios))
	if len(p99Ratios) == 0 {
		fmt.Fprintf(out, "p99 at %d/s mcc/noop: no round achieved the rate on both servers (the machine is saturated); not compared\n", o.rate)
	} else {
		pr := median(p99Ratios)
		fmt.Fprintf(out, "p99 at %d/s mcc/noop %.2f× (target <= %.1f×: %s), median of %d paired rounds\n",
			o.rate, pr, p99Ceiling, verdict(pr <= p99Ceiling), len(p99Ratios))
	}
	if len(cpuRatios) > 0 {
		fmt.Fprintf(out, "server CPU per check mcc/noop %.2f× (no target: what the policy costs over gRPC, least sensitive to other load)\n", median(cpuRatios))
	}
	return nil
}

// measureTarget runs one round's two phases against t: closed loop, then
// the fixed rate. Any failure or denial makes the figures incomparable.
func measureTarget(ctx context.Context, t target, req *authv3.CheckRequest, o compareOptions) (roundResult, error) {
	var r roundResult
	cpu0, cpuOK := processCPU(t.pid)
	loop := closedLoop(ctx, t.clients, req, o.concurrency, o.duration)
	cpu1, cpuOK1 := processCPU(t.pid)
	r.throughput = loop.perSecond
	if cpuOK && cpuOK1 && loop.done > 0 {
		r.cpuPer = (cpu1 - cpu0) / time.Duration(loop.done)
	}
	r.open = loadRun(ctx, t.clients, req, o.rate, o.duration)
	r.p99 = r.open.pct(0.99)
	if loop.failed > 0 || r.open.errors > 0 || r.open.denied > 0 {
		return r, fmt.Errorf("%d closed-loop failures (first: %s), %d errors and %d denials at %d/s: figures would not be comparable",
			loop.failed, loop.firstFailure, r.open.errors, r.open.denied, o.rate)
	}
	return r, nil
}

// startServers writes the fixture, starts the no-op server (this program,
// -serve-noop) and mcc authz as processes, and waits until both answer the
// check with an allow.
func startServers(ctx context.Context, out io.Writer, dir string, o compareOptions) (targets []target, req *authv3.CheckRequest, stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	fusionFile, leaf, err := writeFixture(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	mccBin := o.mccBinary
	if mccBin == "" {
		mccBin = filepath.Join(dir, "mcc")
		fmt.Fprintln(out, "building ./cmd/mcc ...")
		build := exec.CommandContext(ctx, "go", "build", "-o", mccBin, "github.com/mccgate/mcc/cmd/mcc")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, nil, nil, fmt.Errorf("building mcc (run from inside the module, or pass -mcc): %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "mcc-authz.log"))
	if err != nil {
		return nil, nil, nil, err
	}
	stops = append(stops, func() { logFile.Close() })

	req = checkRequest("bench", leaf)
	for _, s := range []struct {
		name string
		log  io.Writer
		argv func(addr string) []string
	}{
		{"noop", nil, func(addr string) []string { return []string{self, "-serve-noop", addr} }},
		// --admin off: nothing else listens or competes; the fusion
		// file's watcher stays on, as in production.
		{"mcc", logFile, func(addr string) []string {
			return []string{mccBin, "authz", "--config", fusionFile, "--listen", addr, "--admin", "off", "--node", "bench"}
		}},
	} {
		addr, err := freeAddr()
		if err != nil {
			return nil, nil, nil, err
		}
		argv := s.argv(addr)
		pid, stopProc, err := startProcess(ctx, s.log, argv[0], argv[1:]...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("starting %s: %w", s.name, err)
		}
		stops = append(stops, stopProc)
		clients, closeClients, err := dial(addr, o.conns)
		if err != nil {
			return nil, nil, nil, err
		}
		stops = append(stops, closeClients)
		if err := waitReady(ctx, clients[0], req); err != nil {
			if s.log == logFile {
				return nil, nil, nil, fmt.Errorf("%s at %s (log: %s): %w", s.name, addr, tail(logFile.Name()), err)
			}
			return nil, nil, nil, fmt.Errorf("%s at %s: %w", s.name, addr, err)
		}
		targets = append(targets, target{name: s.name, pid: pid, clients: clients})
	}
	return targets, req, stop, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

// closedLoop keeps callers checks in flight for d, each caller sending its
// next check when the previous one returns, and reports completions per
// second and how many failed or were denied. Checks in flight at the end
// complete and count (no deadline cuts them off), and the time includes them.
func closedLoop(ctx context.Context, clients []authv3.AuthorizationClient, req *authv3.CheckRequest, callers int, d time.Duration) loopResult {
	var done, bad atomic.Int64
	var once sync.Once
	var firstFailure string
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range callers {
		c := clients[i%len(clients)]
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				resp, err := c.Check(ctx, req)
				if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
					bad.Add(1)
					once.Do(func() { firstFailure = fmt.Sprint(err, " ", resp.GetStatus()) })
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return loopResult{perSecond: float64(done.Load()) / time.Since(start).Seconds(), done: done.Load(), failed: bad.Load(), firstFailure: firstFailure}
}

// loopResult is one closed-loop phase.
type loopResult struct {
	perSecond    float64
	done, failed int64
	firstFailure string
}

// serveNoop serves the no-op Authorization server on addr until the parent
// closes stdin: the floor, in its own process like mcc authz.
func serveNoop(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, noopServer{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); gs.Stop() }()
	return gs.Serve(lis)
}

// startProcess starts a server process whose stdin is a pipe the returned
// stop closes (serveNoop exits on that); stop then kills it if it is still
// running and waits.
func startProcess(ctx context.Context, log io.Writer, name string, args ...string) (pid int, stop func(), err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if log == nil {
		log = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = log, log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	return cmd.Process.Pid, func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}, nil
}

// waitReady retries the first check until the server answers (it is still
// starting) or 15 s pass; an answer that is a denial fails at once.
func waitReady(ctx context.Context, c authv3.AuthorizationClient, req *authv3.CheckRequest) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := firstCheck(cctx, c, req)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		var denied errDenied
		if errors.As(err, &denied) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free a moment ago (the
// child process binds it; a race with another program is reported by
// waitReady).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail returns the last lines of a log file, for an error message.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return fmt.Sprint(lines)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
