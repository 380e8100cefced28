package caddymod

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// The three pools hold what must outlive a config reload. Caddy provisions
// the new config while the old one still serves, so each App takes one
// reference in each pool in Provision and gives it back in Cleanup. Keys are
// the identity of the thing, not of the config: the same store (scores and
// bans) is kept as long as the new config names the same store, even if its
// sinks or fusion sets change. Below the pipelines, each sink runs once per
// resource it writes (sinkPool, in sink_pool.go).
var (
	storePool    = caddy.NewUsagePool() // store module id and key -> *storeEntry
	pipelinePool = caddy.NewUsagePool() // sink module ids and keys -> *pipelineEntry
	statePool    = caddy.NewUsagePool() // engineKey -> *sharedState
)

// poolKeys are the three keys an App holds.
type poolKeys struct {
	store, sinks, engine string
}

// storeEntry is a score store plus the clock it (and the engine) reads.
type storeEntry struct {
	store threat.Store
	clock *clock
}

func (e *storeEntry) Destruct() error { return e.store.Close() }

// pipelineEntry is the event pipeline over the configured sinks.
type pipelineEntry struct {
	pipeline *threat.Pipeline
	sinks    []*sinkHandle
}

// commit hands the running sinks over to this pipeline's settings, once
// its config has started (see sinkPool).
func (e *pipelineEntry) commit() error {
	var errs []error
	for _, h := range e.sinks {
		if err := h.commit(); err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", h.name, err))
		}
	}
	return errors.Join(errs...)
}

// pipelineCloseTimeout bounds how long a retired pipeline drains its queues.
const pipelineCloseTimeout = 5 * time.Second

func (e *pipelineEntry) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), pipelineCloseTimeout)
	defer cancel()
	return e.pipeline.Close(ctx)
}

// sharedState is what handlers and verifiers use at request time.
type sharedState struct {
	engine  *fusion.Engine
	store   *storeEntry
	sinks   *pipelineEntry
	metrics *appMetrics
	node    string
	// owner is the app whose configuration the engine runs: the one that
	// started last. Only it may swap the engine's configuration.
	owner atomic.Pointer[App]
	// reloads and reloadFailures count the watcher's attempts to apply
	// changed files (tests wait on them).
	reloads, reloadFailures atomic.Uint64
}

// Destruct has nothing to release: the engine holds no goroutines (the
// watcher belongs to the App), and store and pipeline have their own entries.
func (s *sharedState) Destruct() error { return nil }

// clock is the time source of the store and the engine. Tests in this
// package move it with set; everything else reads time.Now.
type clock struct {
	fn atomic.Pointer[func() time.Time]
}

// Now returns the current time.
func (c *clock) Now() time.Time {
	if f := c.fn.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// set replaces the time source; nil restores time.Now. Test hook.
func (c *clock) set(f func() time.Time) {
	if f == nil {
		c.fn.Store(nil)
		return
	}
	c.fn.Store(&f)
}

// acquireState takes one reference on the store, the pipeline and the engine
// that a's config names, creating them when no running config has them yet.
// loaded reports whether the engine already existed (a reload).
func acquireState(a *App, cfg *fusion.Config) (st *sharedState, keys poolKeys, loaded bool, err error) {
	store := a.res.store
	if store == nil {
		store = new(MemoryStore)
	}
	sinks := a.res.sinks
	if len(sinks) == 0 {
		sinks = []EventSink{defaultSink()}
	}
	keys = poolKeys{
		store: "store:" + pluginKey(store, store.StoreKey()),
		sinks: "sinks:",
	}
	for _, s := range sinks {
		// settings is compact JSON, which escapes newlines: one per sink.
		resource, settings := s.SinkKey()
		keys.sinks += pluginKey(s, resource+" "+settings) + "\n"
	}
	keys.engine = "engine:" + keys.store + "|" + keys.sinks + "|node:" + a.res.node

	sv, _, err := storePool.LoadOrNew(keys.store, func() (caddy.Destructor, error) {
		return newStoreEntry(store, a.logger)
	})
	if err != nil {
		return nil, keys, false, fmt.Errorf("store: %w", err)
	}
	se := sv.(*storeEntry)

	pv, _, err := pipelinePool.LoadOrNew(keys.sinks, func() (caddy.Destructor, error) {
		return newPipelineEntry(sinks, a.logger)
	})
	if err != nil {
		_, _ = storePool.Delete(keys.store)
		return nil, keys, false, fmt.Errorf("sinks: %w", err)
	}
	pe := pv.(*pipelineEntry)

	ev, loaded, err := statePool.LoadOrNew(keys.engine, func() (caddy.Destructor, error) {
		eng, err := fusion.NewEngine(cfg, fusion.Options{
			Store:    se.store,
			Pipeline: pe.pipeline,
			Clock:    se.clock.Now,
			Logger:   a.logger.Named("engine"),
			Gateway:  threat.GatewayCaddy,
			Node:     a.res.node,
		})
		if err != nil {
			return nil, err
		}
		return &sharedState{
			engine:  eng,
			store:   se,
			sinks:   pe,
			metrics: newAppMetrics(eng, pe.pipeline),
			node:    a.res.node,
		}, nil
	})
	if err != nil {
		_, _ = pipelinePool.Delete(keys.sinks)
		_, _ = storePool.Delete(keys.store)
		return nil, keys, false, fmt.Errorf("engine: %w", err)
	}
	return ev.(*sharedState), keys, loaded, nil
}

// releaseState gives back the references acquireState took.
func releaseState(keys poolKeys) error {
	var errs []error
	for _, d := range []struct {
		pool *caddy.UsagePool
		key  string
		name string
	}{{statePool, keys.engine, "engine"}, {pipelinePool, keys.sinks, "pipeline"}, {storePool, keys.store, "store"}} {
		if _, err := d.pool.Delete(d.key); err != nil {
			errs = append(errs, fmt.Errorf("releasing the %s: %w", d.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mcc: %w", err)
	}
	return nil
}

// pluginKey is a module's key qualified by its module id, so that two
// modules cannot name the same running store or sink.
func pluginKey(m caddy.Module, key string) string {
	return string(m.CaddyModule().ID) + " " + key
}

func newStoreEntry(store ScoreStore, logger *zap.Logger) (*storeEntry, error) {
	c := new(clock)
	st, err := store.OpenStore(c.Now, logger.Named("store"))
	if err != nil {
		return nil, err
	}
	return &storeEntry{store: st, clock: c}, nil
}

func newPipelineEntry(sinks []EventSink, logger *zap.Logger) (*pipelineEntry, error) {
	built := make([]threat.Sink, 0, len(sinks))
	handles := make([]*sinkHandle, 0, len(sinks))
	for _, m := range sinks {
		s, err := acquireSink(m, logger)
		if err != nil {
			for _, b := range built {
				_ = b.Close()
			}
			return nil, fmt.Errorf("%s: %w", m.CaddyModule().ID, err)
		}
		built = append(built, s)
		handles = append(handles, s)
	}
	p := threat.NewPipeline(threat.PipelineOptions{
		Sinks:  built,
		Logger: logger.Named("pipeline"),
	})
	return &pipelineEntry{pipeline: p, sinks: handles}, nil
}
