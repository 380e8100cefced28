package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// handlerBenchmark returns a benchmark of the provisioned fusion_set
// handler's ServeHTTP on the cached path: the same request, carrying the
// tls.ConnectionState of a real mTLS handshake with the demo app
// certificate, served again and again, as on a keep-alive connection.
// The fixture's Caddy must be running.
func handlerBenchmark(f *fixture) (func(b *testing.B), error) {
	h, srv, err := fusionHandler()
	if err != nil {
		return nil, err
	}
	state, err := f.connectionState()
	if err != nil {
		return nil, fmt.Errorf("mTLS handshake for the handler benchmark: %w", err)
	}
	w := &discardWriter{header: http.Header{}}
	base := httptest.NewRequest(http.MethodGet, "https://localhost/", nil)
	base.RemoteAddr = "127.0.0.1:40000"
	base.TLS = &state
	// Each request gets its own context, replacer, vars and log fields, as
	// Caddy's server gives it; preparing them is Caddy's cost, not the
	// handler's, so it happens outside the timer.
	prepare := func() *http.Request {
		return caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, srv)
	}

	passed := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		passed++
		return nil
	})
	// The first call verifies the chain and fills the verdict cache.
	if err := h.ServeHTTP(w, prepare(), next); err != nil || passed != 1 {
		return nil, fmt.Errorf("the fusion_set handler did not pass the valid certificate on (status %d, error %v)", w.status, err)
	}
	return func(b *testing.B) {
		const batchSize = 1024
		batch := make([]*http.Request, batchSize)
		refill := func() {
			for i := range batch {
				batch[i] = prepare()
			}
		}
		refill()
		passed = 0
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%batchSize == 0 && i > 0 {
				b.StopTimer()
				refill()
				b.StartTimer()
			}
			if err := h.ServeHTTP(w, batch[i%batchSize], next); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if passed != b.N {
			b.Fatalf("the handler passed %d of %d requests on", passed, b.N)
		}
	}, nil
}

// connectionState runs a real TLS 1.3 handshake over an in-memory pipe,
// the server requiring and verifying the client certificate as Caddy's
// `client_auth require_and_verify` does, and returns the server's view.
func (f *fixture) connectionState() (tls.ConnectionState, error) {
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	server := tls.Server(sc, &tls.Config{
		Certificates: []tls.Certificate{f.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    f.caPool,
	})
	client := tls.Client(cc, f.client.Clone())
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	serr := server.Handshake()
	cerr := <-errc
	if err := errors.Join(serr, cerr); err != nil {
		return tls.ConnectionState{}, err
	}
	return server.ConnectionState(), nil
}

// discardWriter is a reusable ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
