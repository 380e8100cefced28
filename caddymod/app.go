package caddymod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/crlmetrics"
)

func init() {
	caddy.RegisterModule(new(App))
}

// DefaultWatchInterval is the safety poll of internal/filewatch over the fusion
// set file and the CA, CRL and revocation files it references (changes are
// seen at once through file notifications; the poll catches what they miss).
const DefaultWatchInterval = 2 * time.Second

// App is the `mcc` app: it loads the fusion sets, keeps the engine, the score
// store and the event pipeline, and watches the files they come from.
//
// The engine, store and pipeline live in a caddy.UsagePool, so a config
// reload swaps the fusion sets (Engine.Update) but keeps the running scores,
// the fail-safe bans and the queued events.
type App struct {
	// FusionSetsFile is a fusion set file (YAML), the same file `mcc xds`
	// and `mcc authz` read.
	FusionSetsFile string `json:"fusion_sets_file,omitempty"`
	// FusionSets are inline fusion sets, same model as the file's entries.
	// Relative paths are relative to Caddy's working directory.
	FusionSets []fusion.SetConfig `json:"fusion_sets,omitempty"`
	// StoreRaw is where scores and bans live: a module of the mcc.stores
	// namespace, {"type": "memory"} (the default) or {"type": "redis",
	// "url": ...}. A string ("memory" or a redis URL), the form before
	// stores were modules, is still read.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=mcc.stores inline_key=type"`
	// SinksRaw receive threat events: modules of the mcc.sinks namespace
	// (log, file, webhook, redis_stream). Default: one log sink.
	SinksRaw []json.RawMessage `json:"sinks,omitempty" caddy:"namespace=mcc.sinks inline_key=type"`
	// Node names this gateway instance in events.
	Node string `json:"node,omitempty"`
	// WatchInterval is the safety poll for changes to the fusion set,
	// CA, CRL and revocation files (see DefaultWatchInterval). Default 2s.
	WatchInterval caddy.Duration `json:"watch_interval,omitempty"`

	// res holds the settings with their placeholders expanded; the
	// exported fields keep what the config says.
	res    resolved
	cfg    *fusion.Config
	stamps map[string]fileStamp
	state  *sharedState
	keys   poolKeys
	loaded bool // the engine existed before this config: Start swaps its config
	logger *zap.Logger

	watchMu     sync.Mutex
	watchCancel context.CancelFunc
	watchDone   chan struct{}
	// lastReloadErr is the watcher's last refusal (its goroutine only), so
	// that a file retried at every tick is reported once.
	lastReloadErr string
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcc",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads and compiles the fusion sets and attaches the app to the
// shared engine, store and pipeline (creating them on first use).
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.WatchInterval == 0 {
		a.WatchInterval = caddy.Duration(DefaultWatchInterval)
	}
	if a.WatchInterval < 0 {
		return fmt.Errorf("mcc: watch_interval must be positive, got %s", time.Duration(a.WatchInterval))
	}
	// Metrics are registered first, so that a config refused below is
	// still counted (caddy_mcc_config_reloads_total{result="failure"}).
	if err := registerReloadMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("mcc: registering metrics: %w", err)
	}
	res, err := a.resolve(caddy.NewReplacer())
	if err != nil {
		configLoadFailed(triggerConfig)
		return fmt.Errorf("mcc: %w", err)
	}
	if res.store, res.sinks, err = a.loadPlugins(ctx); err != nil {
		configLoadFailed(triggerConfig)
		return fmt.Errorf("mcc: %w", err)
	}
	a.res = res
	cfg, err := a.buildConfig()
	if err != nil {
		configLoadFailed(triggerConfig)
		return fmt.Errorf("mcc: %w", err)
	}
	a.cfg = cfg
	// Stamp the files as they were read, so that a change made between now
	// and Start is still seen by the watcher.
	a.stamps = stampFiles(cfg.WatchedFiles())

	st, keys, loaded, err := acquireState(a, cfg)
	if err != nil {
		configLoadFailed(triggerConfig)
		return fmt.Errorf("mcc: %w", err)
	}
	a.state, a.keys, a.loaded = st, keys, loaded

	// Each config load has its own registry; the collectors (and their
	// counts) belong to the pooled state and are registered again here.
	if err := st.metrics.register(ctx.GetMetricsRegistry()); err != nil {
		// Cleanup gives the state back: Caddy calls it after a failed
		// Provision.
		configLoadFailed(triggerConfig)
		return fmt.Errorf("mcc: registering metrics: %w", err)
	}
	// CRL freshness (caddy_mcc_crl_*), computed at scrape time from the
	// configuration in force, so a watch reload needs no bookkeeping.
	engine := st.engine
	if err := ctx.GetMetricsRegistry().Register(crlmetrics.New(metricsNamespace, metricsSubsystem, engine.Config, nil)); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if !errors.As(err, &dup) {
			configLoadFailed(triggerConfig)
			return fmt.Errorf("mcc: registering CRL metrics: %w", err)
		}
	}
	a.logger.Info("fusion sets loaded",
		zap.Strings("fusion_sets", cfg.IDs),
		zap.String("file", a.res.setsFile),
		zap.Bool("state_reused", loaded))
	return nil
}

// Validate is called after Provision.
func (a *App) Validate() error { return nil }

// Start swaps the new fusion sets into a shared engine (only now, once the
// whole new config provisioned, so a config that fails later never leaks its
// sets into the running one) and starts watching the referenced files.
func (a *App) Start() error {
	// Now, not in Provision, for the same reason: sinks this config runs
	// with new settings are handed over only once it is accepted.
	if err := a.state.sinks.commit(); err != nil {
		return fmt.Errorf("mcc: %w", err)
	}
	if a.loaded {
		a.state.engine.Update(a.cfg)
	}
	// Counted here, not in Provision: only now has the whole Caddy config
	// been accepted.
	configLoaded(triggerConfig)
	a.state.owner.Store(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.watchMu.Lock()
	a.watchCancel, a.watchDone = cancel, done
	a.watchMu.Unlock()
	go func() {
		defer close(done)
		a.watch(ctx)
	}()
	return nil
}

// Stop stops the file watcher. The engine, store and pipeline stay alive
// until the last config that uses them is cleaned up.
func (a *App) Stop() error {
	a.watchMu.Lock()
	cancel, done := a.watchCancel, a.watchDone
	a.watchCancel, a.watchDone = nil, nil
	a.watchMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// Cleanup releases this config's hold on the shared state.
func (a *App) Cleanup() error {
	if a.state == nil {
		return nil
	}
	err := releaseState(a.keys)
	a.state = nil
	return err
}

// Engine returns the fusion engine shared by this app's handlers and
// verifiers. It is nil before Provision.
func (a *App) Engine() *fusion.Engine {
	if a.state == nil {
		return nil
	}
	return a.state.engine
}

// buildConfig loads the fusion set file (if any) and compiles the inline
// sets into one configuration.
func (a *App) buildConfig() (*fusion.Config, error) {
	var cfg *fusion.Config
	if a.res.setsFile != "" {
		c, err := fusion.LoadFile(a.res.setsFile)
		if err != nil {
			return nil, fmt.Errorf("loading fusion sets: %w", err)
		}
		cfg = c
	} else {
		cfg = &fusion.Config{}
	}
	if len(a.FusionSets) > 0 {
		merged := &fusion.Config{
			Path: cfg.Path,
			File: cfg.File,
			Sets: make(map[string]*fusion.Set, len(cfg.Sets)+len(a.FusionSets)),
			IDs:  append([]string(nil), cfg.IDs...),
		}
		for id, s := range cfg.Sets {
			merged.Sets[id] = s
		}
		for _, sc := range a.FusionSets {
			if _, dup := merged.Sets[sc.ID]; dup {
				return nil, fmt.Errorf("fusion set %q is defined more than once", sc.ID)
			}
			s, err := fusion.CompileSet(sc, workingDir(), inlineSource)
			if err != nil {
				return nil, fmt.Errorf("inline fusion set %q: %w", sc.ID, err)
			}
			merged.Sets[sc.ID] = s
			merged.IDs = append(merged.IDs, sc.ID)
		}
		cfg = merged
	}
	if len(cfg.IDs) == 0 {
		return nil, errors.New("no fusion sets configured: add `fusion_sets <file>` or a `fusion_set <id> {...}` block to the mcc global option")
	}
	return cfg, nil
}

// inlineSource is the file name of inline fusion sets in loader messages:
// none, the caller names the set.
const inlineSource = ""

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
