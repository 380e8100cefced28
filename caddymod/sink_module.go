package caddymod

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// SinkNamespace is the Caddy module namespace of event sinks: the app's
// "sinks" list holds them, each named by its "type" key.
const SinkNamespace = "mcc.sinks"

// EventSink is a module in the mcc.sinks namespace: a place threat events
// go. Guest modules implement it to add sinks of their own.
//
// Sinks outlive config reloads: Caddy provisions a module per config load,
// but a sink runs once per resource (see sinkPool), so a reload that keeps a
// sink keeps its queue, spool and connections, and one that changes its
// settings hands the resource over to the new settings.
type EventSink interface {
	caddy.Module
	// SinkKey returns what the sink owns (a file, a spool directory, a
	// stream: at most one running sink writes each) and its settings, with
	// placeholders expanded (valid after Provision). Both may hold secrets:
	// they are never logged.
	SinkKey() (resource, settings string)
	// OpenSink starts the sink.
	OpenSink(logger *zap.Logger) (threat.Sink, error)
}

func init() {
	for _, t := range fusion.SinkTypes() {
		caddy.RegisterModule(&Sink{SinkConfig: fusion.SinkConfig{Type: t}})
	}
}

// Sink is the module of each built-in sink type (mcc.sinks.log,
// mcc.sinks.file, mcc.sinks.webhook, mcc.sinks.redis_stream). Its keys are
// the fusion file's sinks keys, the same at both gateways (see
// fusion.SinkConfig). String values may use Caddy's {env.NAME} and
// {file.PATH} placeholders, expanded at provisioning, so that a webhook
// token or a Redis password is not in the config Caddy serves on its admin
// /config and autosaves.
type Sink struct {
	fusion.SinkConfig

	// resolved is the config with its placeholders expanded.
	resolved fusion.SinkConfig
}

// CaddyModule returns the Caddy module information.
func (s *Sink) CaddyModule() caddy.ModuleInfo {
	typ := s.Type
	return caddy.ModuleInfo{
		ID:  caddy.ModuleID(SinkNamespace + "." + typ),
		New: func() caddy.Module { return &Sink{SinkConfig: fusion.SinkConfig{Type: typ}} },
	}
}

// Provision expands the placeholders, and warns about secrets written in
// the config itself.
func (s *Sink) Provision(ctx caddy.Context) error {
	logger := ctx.Logger()
	warnInlinePassword(logger, s.Type+" sink", s.URL, "redis://:{file./run/secrets/redis-password}@host:6379/0")
	for name, v := range s.Header {
		if !strings.Contains(v, "{") && secretHeader.MatchString(name) {
			warnInlineSecret(logger, s.Type+" sink's "+name+" header is written", `header Authorization "Bearer {file./run/secrets/webhook-token}"`,
				zap.String("header", name))
		}
	}
	repl := caddy.NewReplacer()
	r, err := s.SinkConfig.Expand(func(v string) (string, error) {
		if !strings.Contains(v, "{") {
			return v, nil
		}
		return repl.ReplaceOrErr(v, true, true)
	})
	if err != nil {
		return fmt.Errorf("%s sink: %w", s.Type, err)
	}
	s.resolved = r
	return nil
}

// Validate checks the expanded config with the rule both gateways apply.
func (s *Sink) Validate() error {
	if err := fusion.CheckSinks([]fusion.SinkConfig{s.resolved}); err != nil {
		return fmt.Errorf("%s sink: %w", s.Type, err)
	}
	return nil
}

// SinkKey implements EventSink.
func (s *Sink) SinkKey() (resource, settings string) {
	r := s.resolved
	switch r.Type {
	case fusion.SinkFile:
		resource = r.Path
	case fusion.SinkWebhook:
		resource = r.SpoolDir
	case fusion.SinkRedisStream:
		resource = r.URL + " " + r.Stream
	}
	if resource != "" && r.Type != fusion.SinkRedisStream {
		if abs, err := filepath.Abs(resource); err == nil {
			resource = abs
		}
	}
	b, _ := json.Marshal(r) // plain fields: cannot fail
	return r.Type + " " + resource, string(b)
}

// OpenSink implements EventSink.
func (s *Sink) OpenSink(logger *zap.Logger) (threat.Sink, error) {
	return s.resolved.Open(context.Background(), logger)
}

// secretHeader matches the names of headers that usually carry a
// credential.
var secretHeader = regexp.MustCompile(`(?i)auth|token|key|secret|password|signature|cookie`)

// Interface guards.
var (
	_ EventSink         = (*Sink)(nil)
	_ caddy.Provisioner = (*Sink)(nil)
	_ caddy.Validator   = (*Sink)(nil)
)

// defaultSink is the sink of a config that names none: the log.
func defaultSink() EventSink {
	c := fusion.SinkConfig{Type: fusion.SinkLog}
	return &Sink{SinkConfig: c, resolved: c}
}

// loadPlugins provisions the app's store and sink modules.
func (a *App) loadPlugins(ctx caddy.Context) (ScoreStore, []EventSink, error) {
	if len(a.StoreRaw) > 0 && a.StoreRaw[0] == '"' {
		var setting string
		if err := json.Unmarshal(a.StoreRaw, &setting); err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		raw, err := storeModuleJSON(setting)
		if err != nil {
			return nil, nil, err
		}
		a.StoreRaw = raw
	}
	var store ScoreStore = new(MemoryStore)
	if len(a.StoreRaw) > 0 {
		v, err := ctx.LoadModule(a, "StoreRaw")
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		st, ok := v.(ScoreStore)
		if !ok {
			return nil, nil, fmt.Errorf("store: module %T is not a score store", v)
		}
		store = st
	}
	if len(a.SinksRaw) == 0 {
		return store, []EventSink{defaultSink()}, nil
	}
	vs, err := ctx.LoadModule(a, "SinksRaw")
	if err != nil {
		return nil, nil, fmt.Errorf("sinks: %w", err)
	}
	var (
		sinks   []EventSink
		builtin []fusion.SinkConfig
	)
	for i, v := range vs.([]any) {
		s, ok := v.(EventSink)
		if !ok {
			return nil, nil, fmt.Errorf("sinks[%d]: module %T is not an event sink", i, v)
		}
		sinks = append(sinks, s)
		if b, ok := v.(*Sink); ok {
			builtin = append(builtin, b.resolved)
		}
	}
	// Two sinks on one file or spool directory: each module alone is fine.
	if err := fusion.CheckSinks(builtin); err != nil {
		return nil, nil, err
	}
	return store, sinks, nil
}
