// Package webhooktest is a real HTTP receiver for the webhook sink's tests,
// shared by the sink's own tests and the gateways' end-to-end tests: it
// records the events it is sent in arrival order, and its listener can be
// taken away and given back on the same port, so that a sender sees
// connection refused in between.
package webhooktest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// WaitFor bounds polling loops: long enough for a loaded 2-core machine.
const WaitFor = 30 * time.Second

// Mode is how the receiver answers.
type Mode int

// Receiver modes.
const (
	Up           Mode = iota // 200, events recorded
	Down                     // 503, nothing recorded
	LoseResponse             // events recorded, then 500: the sender cannot know they arrived
	Reject                   // 400
	Hang                     // never answers until Unhang
	Discard                  // 200 without looking (benchmarks)
)

// Arrival is one event as it arrived.
type Arrival struct {
	ID  string
	Raw string
}

// Receiver is the HTTP server.
type Receiver struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	mode     Mode
	arrivals []Arrival
	headers  []http.Header
	posts    int
	bad      []error
	srv      *http.Server
	release  chan struct{}
	require  map[string]string
}

// NewReceiver starts a receiver on a loopback port; it stops when the test
// ends.
func NewReceiver(t testing.TB) *Receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{t: t, addr: l.Addr().String(), release: make(chan struct{}), require: map[string]string{}}
	r.serve(l)
	t.Cleanup(func() {
		r.Unhang()
		r.Stop()
	})
	return r
}

// URL is where to POST.
func (r *Receiver) URL() string { return "http://" + r.addr + "/events" }

// RequireHeader makes a POST without header name set to value a bad
// request (recorded in Errs).
func (r *Receiver) RequireHeader(name, value string) {
	r.mu.Lock()
	r.require[name] = value
	r.mu.Unlock()
}

func (r *Receiver) serve(l net.Listener) {
	srv := &http.Server{Handler: r, ReadHeaderTimeout: WaitFor}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// Stop closes the listener and every connection.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Start listens again on the same port.
func (r *Receiver) Start() {
	r.t.Helper()
	var l net.Listener
	var err error
	deadline := time.Now().Add(WaitFor)
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

// SetMode changes how the receiver answers from the next POST on.
func (r *Receiver) SetMode(m Mode) {
	r.mu.Lock()
	r.mode = m
	r.mu.Unlock()
}

// Unhang answers the POSTs held by Hang.
func (r *Receiver) Unhang() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.release:
	default:
		close(r.release)
	}
}

// ServeHTTP records a batch.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	mode := r.mode
	r.posts++
	r.headers = append(r.headers, req.Header.Clone())
	release := r.release
	require := make(map[string]string, len(r.require))
	for k, v := range r.require {
		require[k] = v
	}
	r.mu.Unlock()
	switch mode {
	case Down:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case Reject:
		http.Error(w, "bad", http.StatusBadRequest)
		return
	case Discard:
		_, _ = io.Copy(io.Discard, req.Body)
		return
	case Hang:
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
	for name, want := range require {
		if err == nil && req.Header.Get(name) != want {
			err = errors.New("missing or wrong " + name + " header")
		}
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
		if err := schematest.ValidateEventJSON(raw); err != nil {
			r.bad = append(r.bad, err)
		}
		r.arrivals = append(r.arrivals, Arrival{ID: e.ID, Raw: string(raw)})
	}
	if mode == LoseResponse {
		http.Error(w, "response lost", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// Arrivals returns the events so far, in arrival order, repeats included.
func (r *Receiver) Arrivals() []Arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Arrival(nil), r.arrivals...)
}

// Headers returns the headers of every POST so far.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// Posts is the number of POSTs so far, whatever their answer.
func (r *Receiver) Posts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts
}

// Distinct is the number of different ids received.
func (r *Receiver) Distinct() int {
	seen := make(map[string]bool)
	for _, a := range r.Arrivals() {
		seen[a.ID] = true
	}
	return len(seen)
}

// Errs are the malformed POSTs and events.
func (r *Receiver) Errs() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.bad...)
}

// WaitDistinct polls until n different ids arrived.
func (r *Receiver) WaitDistinct(n int) {
	r.t.Helper()
	deadline := time.Now().Add(WaitFor)
	for r.Distinct() < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver has %d distinct events after %v, want %d", r.Distinct(), WaitFor, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FirstArrivals returns the ids in the order they first arrived, and fails
// t if an id arrived twice with different content (ids must be stable).
func FirstArrivals(t testing.TB, arrivals []Arrival) []string {
	t.Helper()
	first := make(map[string]string)
	var order []string
	for _, a := range arrivals {
		if raw, seen := first[a.ID]; seen {
			if raw != a.Raw {
				t.Fatalf("event %s arrived twice with different content", a.ID)
			}
			continue
		}
		first[a.ID] = a.Raw
		order = append(order, a.ID)
	}
	return order
}

// CheckFirstArrivals asserts that the first arrival of each id follows want
// exactly (every id, in order, nothing else) and that a repeated id carries
// the same event.
func CheckFirstArrivals(t testing.TB, arrivals []Arrival, want []string) {
	t.Helper()
	order := FirstArrivals(t, arrivals)
	if len(order) != len(want) {
		t.Fatalf("received %d distinct events, want %d", len(order), len(want))
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("first arrival %d is %s, want %s: order broken", i, order[i], want[i])
		}
	}
}
