// Package threattest has helpers for tests that see threat events: a sink
// that records what it is given, and a complete sample event.
package threattest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// Recorder is a threat.Sink that keeps every event it is given, in order.
// Each delivered event is encoded and checked against the event schema; a
// failure is kept and reported by Err, so a test can assert on it.
type Recorder struct {
	name     string
	validate bool

	mu      sync.Mutex
	events  []*threat.Event
	invalid []error
	closed  bool
	changed chan struct{} // closed and replaced on every change
}

// NewRecorder returns an empty recorder named name ("recorder" when empty).
func NewRecorder(name string) *Recorder {
	if name == "" {
		name = "recorder"
	}
	return &Recorder{name: name, validate: true, changed: make(chan struct{})}
}

// NewUncheckedRecorder is NewRecorder without the schema check, for tests
// that push so many events that validating each would dominate their time.
func NewUncheckedRecorder(name string) *Recorder {
	r := NewRecorder(name)
	r.validate = false
	return r
}

func (r *Recorder) Name() string { return r.name }

// Deliver records the batch.
func (r *Recorder) Deliver(_ context.Context, batch []*threat.Event) error {
	var bad []error
	for _, e := range batch {
		if !r.validate {
			break
		}
		b, err := e.MarshalJSON()
		if err == nil {
			err = schematest.ValidateEventJSON(b)
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("event %s (%s): %w", e.ID, e.ReasonCode, err))
		}
	}
	r.mu.Lock()
	r.events = append(r.events, batch...)
	r.invalid = append(r.invalid, bad...)
	r.notifyLocked()
	r.mu.Unlock()
	return nil
}

// Close marks the recorder closed.
func (r *Recorder) Close() error {
	r.mu.Lock()
	r.closed = true
	r.notifyLocked()
	r.mu.Unlock()
	return nil
}

func (r *Recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Events returns a copy of the events recorded so far.
func (r *Recorder) Events() []*threat.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*threat.Event(nil), r.events...)
}

// Len returns how many events were recorded.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Closed reports whether Close was called.
func (r *Recorder) Closed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Err returns the schema violations found in delivered events, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.invalid) == 0 {
		return nil
	}
	return fmt.Errorf("%d invalid threat events, first: %w", len(r.invalid), r.invalid[0])
}

// WaitFor blocks until at least n events were recorded or ctx ends, and
// returns the events recorded so far.
func (r *Recorder) WaitFor(ctx context.Context, n int) ([]*threat.Event, error) {
	for {
		r.mu.Lock()
		if len(r.events) >= n {
			out := append([]*threat.Event(nil), r.events...)
			r.mu.Unlock()
			return out, nil
		}
		ch, have := r.changed, len(r.events)
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return r.Events(), fmt.Errorf("waiting for %d threat events, have %d: %w", n, have, ctx.Err())
		}
	}
}

// Event returns a complete, schema-valid event for reason with every
// optional key set, certificate and device keys included.
func Event(reason threat.Reason) *threat.Event {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := &threat.Event{
		Schema:                  threat.SchemaID,
		ID:                      threat.NewEventID(),
		Time:                    now,
		Name:                    threat.FeatureName,
		ReasonCode:              reason,
		ReasonData:              map[string]any{"detail": "sample"},
		Ref:                     "https://example.invalid/reasons#" + string(reason),
		CurrentThreatEventScore: threat.DefaultScores[reason],
		ThreatEventsScore:       threat.DefaultScores[reason] * 2,
		Message:                 "This app build is not allowed.",
		FailSafeEnforce:         false,
		ExternalID:              "req-0001",
		FusedAppToken:           "build-42",
		BuildDate:               now.Add(-24 * time.Hour).Format(time.RFC3339),
		BuildUser:               "ci",
		BuildHost:               "builder-1",
		SDKVersion:              "1.2.3",
		Device:                  map[string]string{},
		FusionSet:               "bank-prod",
		Mode:                    threat.ModeDefense,
		Action:                  threat.ActionBlocked,
		Gateway:                 threat.GatewayCaddy,
		Node:                    "node-1",
		ClientIP:                "192.0.2.10",
		SNI:                     "api.example.com",
		Host:                    "api.example.com",
		Method:                  "GET",
		Path:                    "/accounts",
		Certificate: &threat.CertInfo{
			Serial:    "1a2b3c",
			SHA256:    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Subject:   "CN=app,O=bank-prod",
			Issuer:    "CN=bank-prod CA",
			NotBefore: now.Add(-48 * time.Hour),
			NotAfter:  now.Add(365 * 24 * time.Hour),
			AppID:     "app",
			BuildID:   "build-42",
		},
	}
	if reason == threat.ReasonHandshakeFailed {
		e.ReasonData["cause"] = string(threat.ReasonCertUntrusted)
	}
	for _, k := range threat.DeviceKeys {
		e.Device[k] = "sample-" + k
	}
	return e
}
