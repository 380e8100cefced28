package caddymod

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
)

// StoreNamespace is the Caddy module namespace of score stores: the app's
// "store" holds one, named by its "type" key.
const StoreNamespace = "mcc.stores"

// ScoreStore is a module in the mcc.stores namespace: where scores and
// fail-safe bans live. Guest modules implement it to add stores of their
// own. Like sinks, a store outlives config reloads that keep its key.
type ScoreStore interface {
	caddy.Module
	// StoreKey identifies the store, placeholders expanded (valid after
	// Provision). It may hold secrets: it is never logged.
	StoreKey() string
	// OpenStore opens the store. now is the clock the engine reads.
	OpenStore(now func() time.Time, logger *zap.Logger) (threat.Store, error)
}

func init() {
	caddy.RegisterModule(new(MemoryStore))
	caddy.RegisterModule(new(RedisStore))
}

// MemoryStore (mcc.stores.memory) keeps scores and bans in the gateway
// process: the default.
type MemoryStore struct{}

// CaddyModule returns the Caddy module information.
func (*MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: StoreNamespace + ".memory", New: func() caddy.Module { return new(MemoryStore) }}
}

// StoreKey implements ScoreStore.
func (*MemoryStore) StoreKey() string { return storeurl.Memory }

// OpenStore implements ScoreStore. The store reads the engine's clock, so
// that tests can move both.
func (*MemoryStore) OpenStore(now func() time.Time, _ *zap.Logger) (threat.Store, error) {
	return threat.NewMemoryStore(now), nil
}

// RedisStore (mcc.stores.redis) is a Redis shared by every gateway that
// names it, so that bans hold across Caddy and Envoy.
type RedisStore struct {
	// URL is redis://[[user]:password@]host:port/db or rediss://... It may
	// use Caddy's {env.NAME} and {file.PATH} placeholders (the whole URL
	// or a part, such as the password), expanded at provisioning, so that
	// the secret is not in the config Caddy serves on its admin /config
	// and writes to autosave.json.
	URL string `json:"url"`

	resolved string
}

// CaddyModule returns the Caddy module information.
func (*RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: StoreNamespace + ".redis", New: func() caddy.Module { return new(RedisStore) }}
}

// Provision expands the URL's placeholders and checks it, and warns when
// the config itself holds a password.
func (r *RedisStore) Provision(ctx caddy.Context) error {
	warnInlinePassword(ctx.Logger(), "store", r.URL, "`store redis {env.MCC_REDIS_URL}` or redis://:{file./run/secrets/redis-password}@host:6379/0")
	v := r.URL
	if strings.Contains(v, "{") {
		out, err := caddy.NewReplacer().ReplaceOrErr(v, true, true)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		v = out
	}
	s, kind, err := storeurl.ParseExpanded(v, r.URL)
	if err != nil {
		return err
	}
	if kind != storeurl.KindRedis {
		return fmt.Errorf("store redis: want a redis:// or rediss:// URL, not %q", r.URL)
	}
	r.resolved = s
	return nil
}

// StoreKey implements ScoreStore.
func (r *RedisStore) StoreKey() string { return r.resolved }

// OpenStore implements ScoreStore. Redis keeps its own time; now only
// drives the engine.
func (r *RedisStore) OpenStore(_ func() time.Time, logger *zap.Logger) (threat.Store, error) {
	return storeurl.Open(context.Background(), r.resolved, logger)
}

// warnInlinePassword warns when a URL in the config itself holds a
// password: Caddy serves it to anyone who can read the admin /config and
// writes it to autosave.json. what names the setting, example shows it
// with a placeholder.
func warnInlinePassword(logger *zap.Logger, what, v, example string) {
	if strings.Contains(v, "{") {
		return
	}
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return
	}
	if _, ok := u.User.Password(); ok {
		warnInlineSecret(logger, what+" URL holds a password", example, zap.String(what, storeurl.Redact(v)))
	}
}

// warnInlineSecret is the one warning about a secret written in Caddy's
// config.
func warnInlineSecret(logger *zap.Logger, problem, example string, fields ...zap.Field) {
	logger.Warn("the "+problem+" in Caddy's config, which Caddy serves on its admin /config and writes to autosave.json; "+
		"write it as an {env.NAME} or {file.PATH} placeholder instead, e.g. "+example, fields...)
}

// storeModuleJSON is the store module a store setting names ("memory" or a
// redis URL): the Caddyfile's `store` and the app's JSON "store" written as
// a string (its form before stores were modules) both become one.
func storeModuleJSON(setting string) (json.RawMessage, error) {
	if strings.TrimSpace(setting) == storeurl.Memory || strings.TrimSpace(setting) == "" {
		return json.RawMessage(`{"type":"memory"}`), nil
	}
	if !strings.Contains(setting, "{") {
		// A URL with placeholders is checked once they are expanded.
		if _, _, err := storeurl.Parse(setting); err != nil {
			return nil, err
		}
	}
	return json.Marshal(struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}{"redis", setting})
}

// Interface guards.
var (
	_ ScoreStore        = (*MemoryStore)(nil)
	_ ScoreStore        = (*RedisStore)(nil)
	_ caddy.Provisioner = (*RedisStore)(nil)
)
