package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is one measured phase against one URL.
type loadResult struct {
	requests uint64
	errors   uint64
	elapsed  time.Duration
	// cpu is the whole process's CPU time during the phase: Caddy and
	// the clients, which cost the same against both targets.
	cpu      time.Duration
	firstErr error
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// perCPUSecond is requests per second of CPU time: what the rps would be
// if the process had the CPUs to itself. Unlike rps it barely moves when
// other processes compete for the CPUs. 0 when CPU time is not measured.
func (r loadResult) perCPUSecond() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.requests) / r.cpu.Seconds()
}

// runLoad sends GET requests to url from `clients` goroutines for d. With
// keepAlive each client holds one HTTP/1.1 connection for the whole phase;
// without it every request is a new connection with a full TLS handshake
// (no session cache, so no resumption) that presents the client certificate.
func runLoad(ctx context.Context, tlsCfg *tls.Config, url string, clients int, d time.Duration, keepAlive bool) loadResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		ok, failed atomic.Uint64
		errOnce    sync.Once
		firstErr   error
		wg         sync.WaitGroup
	)
	start, cpuStart := time.Now(), processCPU()
	for range clients {
		tr := &http.Transport{
			TLSClientConfig:     tlsCfg.Clone(),
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 1,
			ForceAttemptHTTP2:   false,
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			for ctx.Err() == nil {
				err := get(ctx, client, url)
				switch {
				case err == nil:
					ok.Add(1)
				case ctx.Err() != nil:
					// the phase ended mid-request: not counted
				default:
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	return loadResult{requests: ok.Load(), errors: failed.Load(), elapsed: time.Since(start), cpu: processCPU() - cpuStart, firstErr: firstErr}
}

func get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}
