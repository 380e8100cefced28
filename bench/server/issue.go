package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
)

func init() {
	register(benchmark{name: "issue", what: "bundle issuance through the API (key, certificate, PKCS#12 with PBKDF2, signed record, audit), 8 concurrent clients", run: benchIssue})
}

// certsBenchSet is the fusion set the issuance benchmarks publish (the
// server's own CA, so no trusted_ca).
const certsBenchSet = `fusion_sets:
  - id: bench-prod
    app_id: com.example.bench
    mode: defense
    threat_events: true
`

// certsServer is a real mcc server on loopback for the certificate
// benchmarks: a fresh SQLite data directory (or o.Database), no rate
// limit, an admin token.
type certsServer struct {
	srv    *server.Server
	http   *httptest.Server
	admin  string
	dir    string
	client *http.Client
	stop   func() // ends the server's background work (Run)
}

func startCertsServer(ctx context.Context, o options) (*certsServer, error) {
	dir, err := os.MkdirTemp("", "mcc-bench-certs-")
	if err != nil {
		return nil, err
	}
	cfg := server.Config{DataDir: dir, RateLimit: -1, EnrollRateLimit: -1}
	if o.Database != "" {
		cfg = server.Config{DatabaseURL: o.Database, KEKFile: dir + "/kek.key", RateLimit: -1, EnrollRateLimit: -1}
	}
	s, err := server.Open(ctx, cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	admin, _, err := s.Tokens().Create(ctx, fmt.Sprintf("bench-admin-%d", time.Now().UnixNano()), []auth.Scope{auth.ScopeAdmin}, 0, "cli:bench")
	if err != nil {
		s.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	h := httptest.NewServer(s.Handler())
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	// The background work runs as under `mcc server`: the event indexer
	// shares the cores and the database writer with the requests.
	bg, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(bg); close(done) }()
	stop := func() { cancel(); <-done }
	return &certsServer{srv: s, http: h, admin: admin, dir: dir, stop: stop,
		client: &http.Client{Transport: tr, Timeout: time.Minute}}, nil
}

func (c *certsServer) Close() {
	c.http.Close()
	c.stop()
	c.srv.Close()
	os.RemoveAll(c.dir)
}

// call makes one request and returns the status and body.
func (c *certsServer) call(ctx context.Context, method, path, token, contentType string, body []byte, headers ...string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.http.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// publish publishes certsBenchSet.
func (c *certsServer) publish(ctx context.Context) error {
	status, body, err := c.call(ctx, "PUT", "/v1/fusion-sets/bench-prod", c.admin, "application/yaml", []byte(certsBenchSet))
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return fmt.Errorf("publishing the benchmark set: %d %s", status, body)
	}
	return nil
}

func benchIssue(ctx context.Context, o options) error {
	s, err := startCertsServer(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.publish(ctx); err != nil {
		return err
	}
	total, workers := 2000, 8
	if o.Quick {
		total = 80
	}
	all, elapsed, err := runWorkers(total, workers, func(i int) error {
		body := fmt.Appendf(nil, `{"appId":"com.example.bench","buildId":"build-%d","buildUser":"bench"}`, i+1)
		status, data, err := s.call(ctx, "POST", "/v1/fusion-sets/bench-prod/builds", s.admin, "application/json", body,
			"Idempotency-Key", fmt.Sprintf("bench-%d", i+1))
		if err == nil && status != http.StatusCreated {
			err = fmt.Errorf("issuing: %d %s", status, data)
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("database         %s\n", certsDialect(o))
	fmt.Printf("cpus             %d (GOMAXPROCS %d)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("issued           %d bundles (modern profile, with Idempotency-Key) in %s\n", len(all), elapsed.Round(time.Millisecond))
	fmt.Printf("rate             %.0f bundles/s (budget >= 200/s)\n", float64(len(all))/elapsed.Seconds())
	certsLatency("latency", all)
	return nil
}

func certsDialect(o options) string {
	if o.Database != "" {
		return "postgres"
	}
	return "sqlite"
}

// runWorkers runs one(i) for i in [0, total) from workers goroutines and
// returns each call's latency and the wall time; the first error stops it.
func runWorkers(total, workers int, one func(i int) error) ([]time.Duration, time.Duration, error) {
	var next atomic.Int64
	lat := make([][]time.Duration, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				t0 := time.Now()
				if err := one(int(i)); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return nil, 0, err
	}
	return slices.Concat(lat...), elapsed, nil
}

// certsLatency prints p50, p99 and the maximum of samples.
func certsLatency(what string, samples []time.Duration) {
	slices.Sort(samples)
	q := func(p float64) time.Duration { return samples[int(p*float64(len(samples)-1))] }
	fmt.Printf("%-16s p50 %s  p99 %s  max %s  (%d requests)\n", what,
		q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), samples[len(samples)-1].Round(10*time.Microsecond), len(samples))
}
