package caddymod

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
)

// sinkPool holds the running sinks by what they own (a file, a spool
// directory, a stream), so that at most one sink writes each, whichever
// configs use it. Caddy provisions a new config while the old one still
// runs: when the new one keeps a sink's resource but changes its settings
// (a rotated webhook token, a new timeout), the running sink is handed
// over: closed, leaving what it had not delivered in its spool, and opened
// again with the new settings, behind the same handle. Two writers on one
// spool directory would delete each other's segments.
//
// The handover waits for the new config's Start (sinkHandle.commit): a
// config that provisions but is then refused (another module fails, Caddy
// keeps the running one) must not leave the running config's events going
// to its URL with its token.
var sinkPool = caddy.NewUsagePool() // resource -> *sinkEntry

// sinkEntry is one running sink.
type sinkEntry struct {
	mu       sync.RWMutex // Deliver holds it shared, a handover exclusively
	sink     threat.Sink
	settings string
	open     func() (threat.Sink, error) // opens sink's settings again
}

func (e *sinkEntry) Destruct() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sink.Close()
}

// handover replaces the running sink with one opened with new settings.
// The old one is closed first: they may not own the resource together. If
// the new one does not open, the old settings are opened again, so that the
// running config keeps its sink, and the error is returned.
func (e *sinkEntry) handover(settings string, open func() (threat.Sink, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.settings == settings {
		return nil
	}
	if err := e.sink.Close(); err != nil {
		return fmt.Errorf("closing the running sink for its new settings: %w", err)
	}
	s, err := open()
	if err != nil {
		old, rerr := e.open()
		if rerr != nil {
			return errors.Join(err, fmt.Errorf("reopening the running sink: %w", rerr))
		}
		e.sink = old
		return err
	}
	e.sink, e.settings, e.open = s, settings, open
	return nil
}

// sinkHandle is what a pipeline holds: Deliver goes to the entry's current
// sink, Close gives back the reference.
type sinkHandle struct {
	entry    *sinkEntry
	resource string
	name     string
	closed   atomic.Bool
	// pending is the handover this handle's config wants once it starts;
	// nil when the entry already runs its settings.
	pending *sinkSettings
}

// sinkSettings are a sink's settings and how to open a sink with them.
type sinkSettings struct {
	settings string
	open     func() (threat.Sink, error)
}

// commit applies the handle's pending handover: its config has started.
func (h *sinkHandle) commit() error {
	p := h.pending
	if p == nil {
		return nil
	}
	h.pending = nil
	return h.entry.handover(p.settings, p.open)
}

var _ threat.Sink = (*sinkHandle)(nil)

func (h *sinkHandle) Name() string { return h.name }

func (h *sinkHandle) Deliver(ctx context.Context, batch []*threat.Event) error {
	h.entry.mu.RLock()
	defer h.entry.mu.RUnlock()
	return h.entry.sink.Deliver(ctx, batch)
}

func (h *sinkHandle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	_, err := sinkPool.Delete(h.resource)
	return err
}

// acquireSink returns a handle on the running sink m's resource, opening it
// when nothing runs it yet. When it runs with other settings, the handle
// carries the handover for commit.
func acquireSink(m EventSink, logger *zap.Logger) (*sinkHandle, error) {
	resource, settings := m.SinkKey()
	resource = pluginKey(m, resource)
	open := func() (threat.Sink, error) { return m.OpenSink(logger) }
	v, loaded, err := sinkPool.LoadOrNew(resource, func() (caddy.Destructor, error) {
		s, err := open()
		if err != nil {
			return nil, err
		}
		return &sinkEntry{sink: s, settings: settings, open: open}, nil
	})
	if err != nil {
		return nil, err
	}
	e := v.(*sinkEntry)
	h := &sinkHandle{entry: e, resource: resource}
	e.mu.RLock()
	h.name = e.sink.Name()
	if loaded && e.settings != settings {
		h.pending = &sinkSettings{settings: settings, open: open}
	}
	e.mu.RUnlock()
	return h, nil
}
