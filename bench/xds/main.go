// Command xds measures how fast `mcc xds` pushes a one-line change of a large
// fusion set file to its ADS clients, from outside: it builds mcc, runs
// `mcc xds` as a subprocess over a generated file of -sets fusion sets on one
// listener (with its PKI made by `mcc ca init` and `mcc cert create`), opens
// -delta incremental and -sotw state-of-the-world ADS clients in this
// process (each on its own connection, subscribed like Envoy), waits until
// all hold the whole configuration, then -n times rewrites the file with one
// route's path prefix changed and renames it into place. For each client it
// takes the time from just before the rename to the response that carries
// the changed route configuration, and counts what the change made the
// server send (responses, resources, bytes).
//
//	go run ./bench/xds                      # 1,000 sets, 100 delta + 20 SotW clients, 5 changes
//	go run ./bench/xds -mtls -n 10          # over mTLS, as off loopback
//
// The clients run in this process and decode every response: on a small
// machine they compete with the control plane for the CPU, so the figures
// are an upper bound of what Envoys on their own hosts would see.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

type options struct {
	sets, delta, sotw, n int
	mtls                 bool
	mcc                  string
	timeout              time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.sets, "sets", 1000, "fusion sets (one route and upstream each) on the one listener")
	flag.IntVar(&o.delta, "delta", 100, "delta ADS clients")
	flag.IntVar(&o.sotw, "sotw", 20, "state-of-the-world ADS clients")
	flag.IntVar(&o.n, "n", 5, "route changes to measure")
	flag.BoolVar(&o.mtls, "mtls", false, "serve ADS over mTLS with client certificates and node group peers (as off loopback)")
	flag.StringVar(&o.mcc, "mcc", "", "mcc `binary` to run (default: go build ./cmd/mcc into a temporary directory)")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up waiting for the clients after this long")
	flag.Parse()
	if o.sets < 1 || o.delta < 0 || o.sotw < 0 || o.delta+o.sotw == 0 || o.n < 1 {
		fmt.Fprintln(os.Stderr, "bench/xds: -sets and -n must be positive, and at least one client is needed")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/xds:", err)
		os.Exit(1)
	}
}

// target is the fusion set whose route changes.
func target(o options) string { return fmt.Sprintf("app-%d", o.sets/2) }

func run(o options) error {
	dir, err := os.MkdirTemp("", "mcc-bench-xds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.mcc == "" {
		o.mcc = filepath.Join(dir, "mcc")
		if out, err := exec.Command("go", "build", "-o", o.mcc, "github.com/mccgate/mcc/cmd/mcc").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	p, err := makePKI(o, dir)
	if err != nil {
		return err
	}
	config := filepath.Join(dir, "fusion-sets.yaml")
	if err := os.WriteFile(config, fusionFile(o, p, "/"), 0o600); err != nil {
		return err
	}
	srv, err := startXDS(o, p, dir, config)
	if err != nil {
		return err
	}
	defer srv.stop()

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cs, err := connect(ctx, o, p, srv.addr)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range cs {
			c.close()
		}
	}()
	started := time.Now()
	if err := waitAll(ctx, cs, func(v xdstest.View) bool {
		return len(v.Resources[resourcev3.RouteType]) == o.sets && len(v.Resources[resourcev3.SecretType]) == o.sets+1 &&
			len(v.Resources[resourcev3.EndpointType]) == o.sets+1
	}); err != nil {
		return fmt.Errorf("initial configuration: %w", err)
	}
	fmt.Printf("mcc xds: %d fusion sets on one listener, %d delta + %d SotW ADS clients (%s), initial configuration on every client after %v\n",
		o.sets, o.delta, o.sotw, map[bool]string{false: "loopback plaintext", true: "mTLS"}[o.mtls], time.Since(started).Round(time.Millisecond))

	var all []result
	for i := 1; i <= o.n; i++ {
		r, err := change(ctx, o, p, config, cs, srv, i)
		if err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		r.print(fmt.Sprintf("change %d", i))
		all = append(all, r)
	}
	if o.n > 1 {
		merged := result{}
		for _, r := range all {
			merged.delta = append(merged.delta, r.delta...)
			merged.sotw = append(merged.sotw, r.sotw...)
			merged.reloads = append(merged.reloads, r.reloads...)
		}
		merged.print(fmt.Sprintf("all %d changes", o.n))
	}
	return nil
}

// pki is the generated key material.
type pki struct {
	appCA, appCRL       string // the one CA and CRL every fusion set names
	server, serverKey   string // the listener's certificate
	xdsCert, xdsKey     string // mTLS: mcc xds's certificate
	clientCert, clientK string // mTLS: the clients' certificate
	controlCA           string
	peer                string
}

func makePKI(o options, dir string) (*pki, error) {
	mcc := func(args ...string) error {
		if out, err := exec.Command(o.mcc, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("mcc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	apps, control := filepath.Join(dir, "apps-ca"), filepath.Join(dir, "control-ca")
	p := &pki{
		appCA: filepath.Join(apps, "ca.pem"), appCRL: filepath.Join(apps, "crl.pem"),
		server: filepath.Join(dir, "edge.pem"), serverKey: filepath.Join(dir, "edge-key.pem"),
		xdsCert: filepath.Join(dir, "xds.pem"), xdsKey: filepath.Join(dir, "xds-key.pem"),
		clientCert: filepath.Join(dir, "envoy.pem"), clientK: filepath.Join(dir, "envoy-key.pem"),
		controlCA: filepath.Join(control, "ca.pem"), peer: "spiffe://mcc/envoy/edge",
	}
	steps := [][]string{
		{"ca", "init", "--dir", apps, "--name", "bench apps CA"},
		{"ca", "init", "--dir", control, "--name", "bench control CA"},
		{"cert", "create", "--ca", control, "--name", "edge", "--dns", "*.example.com", "--server", "--out", p.server, "--key-out", p.serverKey},
	}
	if o.mtls {
		steps = append(steps,
			[]string{"cert", "create", "--ca", control, "--name", "mcc-xds", "--ip", "127.0.0.1", "--server", "--out", p.xdsCert, "--key-out", p.xdsKey},
			[]string{"cert", "create", "--ca", control, "--name", "envoy-edge", "--uri", p.peer, "--client", "--out", p.clientCert, "--key-out", p.clientK})
	}
	for _, s := range steps {
		if err := mcc(s...); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// fusionFile is the configuration: every set trusts the same CA and CRL
// (the loader parses each once per content), one route per set, the
// target set's route with path prefix prefix.
func fusionFile(o options, p *pki, prefix string) []byte {
	var b strings.Builder
	b.WriteString("fusion_sets:\n")
	for i := range o.sets {
		mode := "defense"
		if i%2 == 1 {
			mode = "detection"
		}
		fmt.Fprintf(&b, "  - id: app-%d\n    trusted_ca:\n      file: %s\n    app_id: com.example.app%d\n    mode: %s\n    threat_events: true\n    revocation:\n      crls: [%s]\n",
			i, p.appCA, i, mode, p.appCRL)
	}
	fmt.Fprintf(&b, "gateway:\n  authz:\n    address: 127.0.0.1:9001\n  listeners:\n    - name: edge\n      port: 8443\n      certificate:\n        cert_file: %s\n        key_file: %s\n      routes:\n", p.server, p.serverKey)
	for i := range o.sets {
		pp := "/"
		if fmt.Sprintf("app-%d", i) == target(o) {
			pp = prefix // the one line that changes
		}
		fmt.Fprintf(&b, "        - host: app-%d.example.com\n          path_prefix: %s\n          fusion_set: app-%d\n          upstream: api-%d\n", i, pp, i, i)
	}
	b.WriteString("  upstreams:\n")
	for i := range o.sets {
		fmt.Fprintf(&b, "    - name: api-%d\n      endpoints: [127.0.0.1:%d]\n", i, 20000+i%40000)
	}
	b.WriteString("  node_groups:\n    - cluster: edge\n      listeners: [edge]\n")
	if o.mtls {
		fmt.Fprintf(&b, "      peers: [%q]\n", p.peer)
	}
	return []byte(b.String())
}

// server is the running `mcc xds`.
type server struct {
	addr string
	cmd  *exec.Cmd
	// reloads receives the timings of every configuration loaded after
	// the first, from the server's log.
	reloads chan reload
	done    chan error
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func startXDS(o options, p *pki, dir, config string) (*server, error) {
	// Port 0: the server picks one and logs it (no race for a free port).
	args := []string{"xds", "--config", config, "--listen", "127.0.0.1:0", "--admin", "off"}
	if o.mtls {
		args = append(args, "--tls-cert", p.xdsCert, "--tls-key", p.xdsKey, "--client-ca", p.controlCA)
	}
	cmd := exec.Command(o.mcc, args...)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, reloads: make(chan reload, 1024), done: make(chan error, 1)}
	serving := make(chan string, 1)
	logTail := &tail{}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		first := true
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			logTail.add(line)
			var entry struct {
				Msg string `json:"msg"`
				XDS string `json:"xds"` // the address it serves on
				// Durations in seconds (zap's production encoding).
				Took, Load, Translate, Publish float64
			}
			if json.Unmarshal([]byte(line), &entry) != nil {
				continue
			}
			switch entry.Msg {
			case "xDS control plane serving":
				once.Do(func() { serving <- entry.XDS })
			case "configuration loaded":
				if first {
					first = false
					continue
				}
				sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
				select {
				case s.reloads <- reload{sec(entry.Took), sec(entry.Load), sec(entry.Translate), sec(entry.Publish)}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { s.done <- cmd.Wait() }()
	select {
	case s.addr = <-serving:
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("mcc xds exited: %v\n%s", err, logTail)
	case <-time.After(o.timeout):
		s.stop()
		return nil, fmt.Errorf("mcc xds did not start serving within %v\n%s", o.timeout, logTail)
	}
}

// tail keeps the last lines of the server's log for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, l)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// client is one ADS client and what it received during a change.
type client struct {
	delta bool
	x     interface {
		Wait(context.Context, func(xdstest.View) bool) (xdstest.View, error)
		Observe(func(xdstest.Received))
		Close()
	}
	cc *grpc.ClientConn

	mu        sync.Mutex
	since     time.Time // the rename; zero: not measuring
	arrived   time.Time // when the changed route configuration came
	responses int
	resources int
	bytes     int
	types     map[string]bool
}

func (c *client) close() {
	c.x.Close()
	c.cc.Close()
}

// observe counts every response during a change and notes when the one
// with the target's route configuration came.
func (c *client) observe(route string) func(xdstest.Received) {
	return func(r xdstest.Received) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.since.IsZero() {
			return
		}
		c.responses++
		c.resources += len(r.Names) + len(r.Removed)
		c.bytes += r.Bytes
		c.types[r.TypeURL[strings.LastIndex(r.TypeURL, ".")+1:]] = true
		if r.TypeURL != resourcev3.RouteType || !c.arrived.IsZero() {
			return
		}
		for _, n := range r.Names {
			if n == route {
				c.arrived = r.At
			}
		}
	}
}

func dialOptions(o options, p *pki) ([]grpc.DialOption, error) {
	if !o.mtls {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	pair, err := tls.LoadX509KeyPair(p.clientCert, p.clientK)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(p.controlCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("control CA: no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

func connect(ctx context.Context, o options, p *pki, addr string) ([]*client, error) {
	dopts, err := dialOptions(o, p)
	if err != nil {
		return nil, err
	}
	// Large enough for a state-of-the-world response of every route
	// configuration of the listener.
	dopts = append(dopts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	route := translate.RouteConfigName("edge", target(o))
	var cs []*client
	for i := range o.delta + o.sotw {
		cc, err := grpc.NewClient(addr, dopts...)
		if err != nil {
			return cs, err
		}
		c := &client{delta: i < o.delta, cc: cc, types: map[string]bool{}}
		node := &corev3.Node{Id: fmt.Sprintf("bench-%d", i), Cluster: "edge"}
		if c.delta {
			c.x, err = xdstest.StartDelta(ctx, cc, node, nil)
		} else {
			c.x, err = xdstest.StartSotW(ctx, cc, node, nil)
		}
		if err != nil {
			cc.Close()
			return cs, fmt.Errorf("client %d: %w", i, err)
		}
		c.x.Observe(c.observe(route))
		cs = append(cs, c)
	}
	return cs, nil
}

func waitAll(ctx context.Context, cs []*client, cond func(xdstest.View) bool) error {
	errs := make(chan error, len(cs))
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.x.Wait(ctx, cond); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// result is one change as the clients saw it.
type result struct {
	delta, sotw []sample
	reloads     []reload
}

// reload is how long the server took to load, translate and publish.
type reload struct{ took, load, translate, publish time.Duration }

type sample struct {
	latency                     time.Duration
	responses, resources, bytes int
	types                       []string
}

// change renames a file with the target's path prefix changed into place
// and waits until every client has the new route configuration.
func change(ctx context.Context, o options, p *pki, config string, cs []*client, srv *server, i int) (result, error) {
	tmp := config + ".new"
	if err := os.WriteFile(tmp, fusionFile(o, p, fmt.Sprintf("/v%d", i)), 0o600); err != nil {
		return result{}, err
	}
	for len(srv.reloads) > 0 {
		<-srv.reloads
	}
	start := time.Now()
	for _, c := range cs {
		c.mu.Lock()
		c.since, c.arrived = start, time.Time{}
		c.responses, c.resources, c.bytes = 0, 0, 0
		c.types = map[string]bool{}
		c.mu.Unlock()
	}
	if err := os.Rename(tmp, config); err != nil {
		return result{}, err
	}
	deadline := time.Now().Add(o.timeout)
	for {
		pending := 0
		for _, c := range cs {
			c.mu.Lock()
			if c.arrived.IsZero() {
				pending++
			}
			c.mu.Unlock()
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return result{}, fmt.Errorf("%d of %d clients did not get the change within %v", pending, len(cs), o.timeout)
		}
		time.Sleep(time.Millisecond)
	}
	// Whatever else the change makes the server send comes right after;
	// give it a moment to be counted.
	time.Sleep(300 * time.Millisecond)
	var r result
	for _, c := range cs {
		c.mu.Lock()
		s := sample{latency: c.arrived.Sub(start), responses: c.responses, resources: c.resources, bytes: c.bytes}
		for t := range c.types {
			s.types = append(s.types, t)
		}
		sort.Strings(s.types)
		c.since = time.Time{}
		c.mu.Unlock()
		if c.delta {
			r.delta = append(r.delta, s)
		} else {
			r.sotw = append(r.sotw, s)
		}
	}
	for len(srv.reloads) > 0 {
		r.reloads = append(r.reloads, <-srv.reloads)
	}
	return r, nil
}

func (r result) print(label string) {
	fmt.Printf("%s:\n", label)
	for _, f := range []struct {
		name    string
		samples []sample
	}{{"delta", r.delta}, {"sotw", r.sotw}} {
		if len(f.samples) == 0 {
			continue
		}
		lat := make([]time.Duration, len(f.samples))
		var responses, resources, bytes int
		types := map[string]bool{}
		for i, s := range f.samples {
			lat[i] = s.latency
			responses += s.responses
			resources += s.resources
			bytes += s.bytes
			for _, t := range s.types {
				types[t] = true
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		n := len(f.samples)
		var ts []string
		for t := range types {
			ts = append(ts, t)
		}
		sort.Strings(ts)
		fmt.Printf("  %-5s %4d clients: rename -> changed route  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms | per client: %.1f responses, %.1f resources, %.0f bytes (%s)\n",
			f.name, n, ms(pct(lat, 50)), ms(pct(lat, 99)), ms(lat[n-1]),
			float64(responses)/float64(n), float64(resources)/float64(n), float64(bytes)/float64(n), strings.Join(ts, ","))
	}
	if len(r.reloads) > 0 {
		field := func(f func(reload) time.Duration) []time.Duration {
			var out []time.Duration
			for _, x := range r.reloads {
				out = append(out, f(x))
			}
			sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
			return out
		}
		took := field(func(x reload) time.Duration { return x.took })
		fmt.Printf("  server (its log): reload p50 %.1f ms, max %.1f ms; p50 of load %.1f ms, translate %.1f ms, check and publish %.1f ms\n",
			ms(pct(took, 50)), ms(took[len(took)-1]), ms(pct(field(func(x reload) time.Duration { return x.load }), 50)),
			ms(pct(field(func(x reload) time.Duration { return x.translate }), 50)), ms(pct(field(func(x reload) time.Duration { return x.publish }), 50)))
	}
}

// pct is the p-th percentile (nearest rank) of sorted.
func pct(sorted []time.Duration, p int) time.Duration {
	i := (p*len(sorted)+99)/100 - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
