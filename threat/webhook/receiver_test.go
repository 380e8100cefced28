package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/threat"
)

// waitFor bounds polling loops: long enough for a loaded 2-core machine.
const waitFor = 30 * time.Second

// receiver modes.
const (
	modeUp       = iota // 200, events recorded
	modeDown            // 503, nothing recorded
	modeLoseResp        // events recorded, then 500: the sender cannot know they arrived
	modeReject          // 400
	modeHang            // never answers until release
	modeDiscard         // 200 without looking (benchmarks)
)

// receiver is a real HTTP server that records the events it is sent, in
// arrival order. Stop and Start take its listener away and back on the same
// port, so that the sender sees connection refused in between.
type receiver struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	mode     int
	arrivals []arrival
	posts    int
	bad      []error
	srv      *http.Server
	release  chan struct{}
}

type arrival struct {
	id  string
	raw string
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, addr: l.Addr().String(), release: make(chan struct{})}
	r.serve(l)
	t.Cleanup(func() {
		r.unhang()
		r.Stop()
	})
	return r
}

func (r *receiver) URL() string { return "http://" + r.addr + "/events" }

func (r *receiver) serve(l net.Listener) {
	srv := &http.Server{Handler: r}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// Stop closes the listener and every connection.
func (r *receiver) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Start listens again on the same port.
func (r *receiver) Start() {
	r.t.Helper()
	var l net.Listener
	var err error
	deadline := time.Now().Add(waitFor)
	for {
		if l, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("listening again on %s: %v", r.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.serve(l)
}

func (r *receiver) setMode(m int) {
	r.mu.Lock()
	r.mode = m
	r.mu.Unlock()
}

func (r *receiver) unhang() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.release:
	default:
		close(r.release)
	}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	mode := r.mode
	r.posts++
	release := r.release
	r.mu.Unlock()
	switch mode {
	case modeDown:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case modeReject:
		http.Error(w, "bad", http.StatusBadRequest)
		return
	case modeDiscard:
		_, _ = io.Copy(io.Discard, req.Body)
		return
	case modeHang:
		select {
		case <-release:
		case <-req.Context().Done():
		}
		http.Error(w, "late", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(req.Body)
	var batch struct {
		Events []json.RawMessage `json:"events"`
	}
	if err == nil {
		err = json.Unmarshal(body, &batch)
	}
	if err == nil && req.Header.Get("Content-Type") != "application/json" {
		err = errors.New("content type " + req.Header.Get("Content-Type"))
	}
	if err == nil && req.Header.Get("Authorization") != "Bearer t0ken" {
		err = errors.New("missing Authorization header")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, raw := range batch.Events {
		var e threat.Event
		if err := e.UnmarshalJSON(raw); err != nil || e.ID == "" {
			r.bad = append(r.bad, errors.Join(errors.New("undecodable event"), err))
			continue
		}
		if err := threat.ValidateEventJSON(raw); err != nil {
			r.bad = append(r.bad, err)
		}
		r.arrivals = append(r.arrivals, arrival{id: e.ID, raw: string(raw)})
	}
	if mode == modeLoseResp {
		http.Error(w, "response lost", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// snapshot returns the arrivals so far.
func (r *receiver) snapshot() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.arrivals...)
}

func (r *receiver) postCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts
}

// distinct is the number of different ids received.
func (r *receiver) distinct() int {
	seen := make(map[string]bool)
	for _, a := range r.snapshot() {
		seen[a.id] = true
	}
	return len(seen)
}

func (r *receiver) errs() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.bad...)
}

// waitDistinct polls until n different ids arrived.
func (r *receiver) waitDistinct(n int) {
	r.t.Helper()
	deadline := time.Now().Add(waitFor)
	for r.distinct() < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver has %d distinct events after %v, want %d", r.distinct(), waitFor, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkFirstArrivals asserts that the first arrival of each id follows want
// exactly (every id, in order, nothing else) and that a repeated id carries
// the same event.
func checkFirstArrivals(t *testing.T, arrivals []arrival, want []string) {
	t.Helper()
	first := make(map[string]string)
	var order []string
	for _, a := range arrivals {
		if raw, seen := first[a.id]; seen {
			if raw != a.raw {
				t.Fatalf("event %s arrived twice with different content", a.id)
			}
			continue
		}
		first[a.id] = a.raw
		order = append(order, a.id)
	}
	if len(order) != len(want) {
		t.Fatalf("received %d distinct events, want %d", len(order), len(want))
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("first arrival %d is %s, want %s: order broken", i, order[i], want[i])
		}
	}
}
