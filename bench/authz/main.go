// Command authz is an open-loop load generator for mcc's ext_authz service.
//
// It sends Envoy-shaped CheckRequests carrying a real, valid client
// certificate at a fixed rate, whether or not earlier ones have returned (so a
// slow server cannot slow the generator down and hide its own latency), and
// prints latency percentiles and the achieved rate:
//
//	go run ./bench/authz -rate 5000 -duration 10s
//	go run ./bench/authz -max                       # highest sustained rate
//	go run ./bench/authz -addr 127.0.0.1:18081 -fusion-set app -cert leaf.pem
//	go run ./bench/authz -compare                   # mcc authz against a no-op server: ratios
//
// Without -addr it starts the service in-process on a loopback port, with a
// demo PKI and a one-set fusion set file in a temporary directory.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/authz:", err)
		os.Exit(1)
	}
}

type options struct {
	addr      string
	rate      int
	duration  time.Duration
	warmup    time.Duration
	conns     int
	fusionSet string
	certFile  string
	max       bool
	maxP50    time.Duration
	step      time.Duration
	noop      bool
	compare   compareOptions
	doCompare bool
	serveNoop string
}

func run(args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench/authz", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "", "ext_authz `address` to target (default: start the service in-process)")
	fs.IntVar(&o.rate, "rate", 5000, "checks per second to send (with -max: the first step, default 1000)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each run")
	fs.IntVar(&o.conns, "conns", 1, "gRPC connections (Envoy uses one per worker thread)")
	fs.StringVar(&o.fusionSet, "fusion-set", "bench", "fusion set id sent in context_extensions (with -addr)")
	fs.StringVar(&o.certFile, "cert", "", "PEM `file` whose first certificate is the client leaf (required with -addr)")
	fs.BoolVar(&o.max, "max", false, "find the highest sustained rate instead of one run")
	fs.DurationVar(&o.maxP50, "max-p50", time.Millisecond, "with -max: a rate is sustained when the median stays under this (and >= 97% of it is achieved, with no errors)")
	fs.DurationVar(&o.step, "step", 3*time.Second, "with -max: duration of each step")
	fs.BoolVar(&o.noop, "noop", false, "in-process: serve a Check that only answers OK, to measure gRPC's own floor on this machine")
	fs.BoolVar(&o.doCompare, "compare", false, "run the no-op server and a built `mcc authz` side by side, each out of process, alternating over -rounds, and print the ratios")
	fs.IntVar(&o.compare.rounds, "rounds", 4, "with -compare: measured rounds (each runs both servers, in alternating order)")
	fs.IntVar(&o.compare.concurrency, "concurrency", 32, "with -compare: checks kept in flight for the closed-loop throughput")
	fs.StringVar(&o.compare.mccBinary, "mcc", "", "with -compare: the mcc `binary` to run (default: go build ./cmd/mcc)")
	fs.StringVar(&o.serveNoop, "serve-noop", "", "internal: serve the no-op server on `address` until stdin closes (what -compare starts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.serveNoop != "" {
		return serveNoop(o.serveNoop)
	}
	if o.doCompare {
		durationSet := false
		fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
		if !durationSet {
			o.duration = 3 * time.Second
		}
		if o.rate <= 0 || o.conns <= 0 || o.duration <= 0 {
			return errors.New("-rate, -conns and -duration must be positive")
		}
		o.compare.rate, o.compare.duration, o.compare.warmup, o.compare.conns = o.rate, o.duration, o.warmup, o.conns
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		return runCompare(ctx, out, o.compare)
	}
	if o.max {
		rateSet := false
		fs.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
		if !rateSet {
			o.rate = 1000
		}
	}
	if o.rate <= 0 || o.conns <= 0 {
		return errors.New("-rate and -conns must be positive")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	target, leaf, stop, err := setup(ctx, o)
	if err != nil {
		return err
	}
	defer stop()

	clients, closeClients, err := dial(target, o.conns)
	if err != nil {
		return err
	}
	defer closeClients()
	req := checkRequest(o.fusionSet, leaf)
	if err := firstCheck(ctx, clients[0], req); err != nil {
		return err
	}

	fmt.Fprintf(out, "target %s, %d connection(s), GOMAXPROCS %d, in-process %v, noop %v\n", target, o.conns, runtime.GOMAXPROCS(0), o.addr == "", o.noop)
	if !o.max {
		loadRun(ctx, clients, req, o.rate, o.warmup)
		r := loadRun(ctx, clients, req, o.rate, o.duration)
		r.print(out, o.rate)
		return nil
	}
	return findMax(ctx, out, clients, req, o)
}

// dial opens conns gRPC connections to target, in plaintext (loopback).
func dial(target string, conns int) ([]authv3.AuthorizationClient, func(), error) {
	clients := make([]authv3.AuthorizationClient, conns)
	var open []*grpc.ClientConn
	closeAll := func() {
		for _, cc := range open {
			cc.Close()
		}
	}
	for i := range clients {
		cc, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("dialing %s: %w", target, err)
		}
		open = append(open, cc)
		clients[i] = authv3.NewAuthorizationClient(cc)
	}
	return clients, closeAll, nil
}

// checkRequest is the Envoy-shaped check every run sends: the leaf as the
// peer certificate, a fusion set in context_extensions, ordinary headers.
func checkRequest(fusionSet string, leaf []byte) *authv3.CheckRequest {
	return envoytest.CheckRequest(envoytest.Check{
		FusionSet:  fusionSet,
		LeafDER:    leaf,
		SourceAddr: "203.0.113.10:50000",
		DestAddr:   "192.0.2.1:443",
		SNI:        "api.bench.example",
		Host:       "api.bench.example",
		Method:     "GET",
		Path:       "/v1/accounts",
		RequestID:  "bench",
		Headers:    map[string]string{"accept": "application/json", "user-agent": "bench"},
	})
}

// firstCheck sends one check before anything is timed: a wrong set or
// certificate should fail loudly, not be measured as a fast deny.
func firstCheck(ctx context.Context, c authv3.AuthorizationClient, req *authv3.CheckRequest) error {
	resp, err := c.Check(ctx, req)
	if err != nil {
		return fmt.Errorf("first check: %w", err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		return errDenied(resp.GetStatus().GetMessage())
	}
	return nil
}

// errDenied is a first check that the server answered with a denial.
type errDenied string

func (e errDenied) Error() string {
	return fmt.Sprintf("first check was denied (%s): the benchmark needs an allowed certificate", string(e))
}

// findMax raises the rate until the service stops keeping up: achieved rate
// under 97% of the target, any error, or a median over -max-p50. The median,
// not p99, because a queue that grows moves the median at once, while a
// burst from another process on a shared machine only moves the tail. A step that fails
// is run once more before giving up, so one scheduling hiccup on a shared
// machine does not end the search. It then reports the highest rate that
// held.
func findMax(ctx context.Context, out io.Writer, clients []authv3.AuthorizationClient, req *authv3.CheckRequest, o options) error {
	best := 0
	rate := o.rate
	for range 20 {
		held := false
		for attempt := 0; attempt < 2 && !held; attempt++ {
			loadRun(ctx, clients, req, rate, o.warmup)
			r := loadRun(ctx, clients, req, rate, o.step)
			r.print(out, rate)
			held = r.errors == 0 && r.achieved >= 0.97*float64(rate) && r.pct(0.50) <= o.maxP50
		}
		if !held {
			break
		}
		best = rate
		rate = rate * 5 / 4
	}
	if best == 0 {
		fmt.Fprintf(out, "max: not even %d checks/s held (p50 <= %s)\n", o.rate, o.maxP50)
		return nil
	}
	fmt.Fprintf(out, "max sustained: %d checks/s (p50 <= %s, >= 97%% of target achieved, no errors)\n", best, o.maxP50)
	return nil
}

type result struct {
	lat      []time.Duration
	errors   int64
	denied   int64
	achieved float64 // completions per second
	lag      time.Duration
}

// loadRun sends checks at rate for d, open loop: each check goes out at its
// scheduled time on its own goroutine, whatever earlier ones are doing.
// Latency is measured from the moment a check is sent; lag reports how far
// sending fell behind the schedule (which would hide latency if large).
func loadRun(ctx context.Context, clients []authv3.AuthorizationClient, req *authv3.CheckRequest, rate int, d time.Duration) result {
	n := int(float64(rate) * d.Seconds())
	lat := make([]time.Duration, n)
	var errs, denied atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var maxLag time.Duration
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		} else if -wait > maxLag {
			maxLag = -wait
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t0 := time.Now()
			resp, err := clients[i%len(clients)].Check(ctx, req)
			lat[i] = time.Since(t0)
			switch {
			case err != nil:
				errs.Add(1)
			case codes.Code(resp.GetStatus().GetCode()) != codes.OK:
				denied.Add(1)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	return result{lat: lat, errors: errs.Load(), denied: denied.Load(), achieved: float64(n) / elapsed.Seconds(), lag: maxLag}
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(r.lat)-1))
	return r.lat[i]
}

func (r result) print(out io.Writer, target int) {
	fmt.Fprintf(out, "rate %6d/s: achieved %8.1f/s  n=%d  p50 %8s  p90 %8s  p99 %8s  max %8s  errors %d  denied %d  max send lag %s\n",
		target, r.achieved, len(r.lat), r.pct(0.50), r.pct(0.90), r.pct(0.99), r.pct(1), r.errors, r.denied, r.lag.Round(time.Microsecond))
}

// setup returns the target address and the client leaf. In-process it builds
// a demo PKI, a fusion set file and a running service.
func setup(ctx context.Context, o options) (target string, leaf []byte, stop func(), err error) {
	if o.addr != "" {
		if o.certFile == "" {
			return "", nil, nil, errors.New("-cert is required with -addr")
		}
		leaf, err := readLeaf(o.certFile)
		return o.addr, leaf, func() {}, err
	}
	dir, err := os.MkdirTemp("", "mcc-bench-authz-")
	if err != nil {
		return "", nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	file, leaf, err := writeFixture(dir)
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	cfg, err := fusion.LoadFile(file)
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	svc, err := envoyext.New(envoyext.Options{Config: cfg, Node: "bench"})
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return "", nil, nil, err
	}
	if o.noop {
		gs := grpc.NewServer()
		authv3.RegisterAuthorizationServer(gs, noopServer{})
		go func() { _ = gs.Serve(lis) }()
		return lis.Addr().String(), leaf, func() { gs.Stop(); cleanup() }, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(sctx, envoyext.ServeOptions{GRPC: lis}) }()
	return lis.Addr().String(), leaf, func() { cancel(); <-done; cleanup() }, nil
}

// writeFixture writes a demo PKI and a one-set fusion file ("bench", defense
// mode, events on) into dir, and returns the file and the DER of a client
// leaf that set allows.
func writeFixture(dir string) (fusionFile string, leaf []byte, err error) {
	demo, err := pki.EnsureDemo(filepath.Join(dir, "pki"), "bench", "bench-app")
	if err != nil {
		return "", nil, err
	}
	if leaf, err = readLeaf(demo.Cert); err != nil {
		return "", nil, err
	}
	fusionFile = filepath.Join(dir, "fusion.yaml")
	yaml := fmt.Sprintf("fusion_sets:\n  - id: bench\n    trusted_ca: {file: %q}\n    app_id: bench-app\n    mode: defense\n    threat_events: true\n", demo.CACert)
	if err := os.WriteFile(fusionFile, []byte(yaml), 0o600); err != nil {
		return "", nil, err
	}
	return fusionFile, leaf, nil
}

// noopServer answers every Check with OK: the gRPC floor.
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

func readLeaf(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return block.Bytes, nil
}
