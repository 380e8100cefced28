package fusion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstream"
	"github.com/mccgate/mcc/threat/webhook"
)

// Sink types.
const (
	SinkLog         = "log"
	SinkFile        = "file"
	SinkWebhook     = "webhook"
	SinkRedisStream = "redis_stream"
)

// SinkConfig is one event sink: an entry of the fusion file's `sinks:`
// section, read by `mcc authz`, and the model of Caddy's `sink` option
// (its sink modules embed it, and its Caddyfile keys are SetKey's, so a key
// has one name and one syntax at both gateways).
//
// String values may hold {env.NAME} and {file.PATH} placeholders, expanded
// when the sink is opened: a webhook token or a Redis password need not be
// written in the file. What is kept, printed and served is the text as
// written.
type SinkConfig struct {
	// Type is the sink: log, file, webhook or redis_stream.
	Type string `yaml:"type" json:"type"`

	// Path is the file sink's file (JSON lines, 0600).
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// MaxSize rotates the file sink's file at this size (default 100 MiB).
	MaxSize ByteSize `yaml:"max_size,omitempty" json:"max_size,omitempty"`
	// Keep is how many rotated files the file sink keeps (default 5).
	Keep int `yaml:"keep,omitempty" json:"keep,omitempty"`

	// URL is the webhook's http(s) endpoint, or the redis:// or rediss://
	// URL of a redis_stream sink.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`

	// Header are HTTP headers the webhook adds to every POST, such as
	// Authorization (never logged; sent only over https or to loopback).
	Header map[string]string `yaml:"header,omitempty" json:"header,omitempty"`
	// SpoolDir is the webhook's on-disk spool (required; one gateway
	// process per directory).
	SpoolDir string `yaml:"spool_dir,omitempty" json:"spool_dir,omitempty"`
	// SpoolMaxBytes bounds the spool (default 64 MiB): beyond it the oldest
	// events are dropped and counted.
	SpoolMaxBytes ByteSize `yaml:"spool_max_bytes,omitempty" json:"spool_max_bytes,omitempty"`
	// Timeout bounds one POST (default 10s).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// BatchSize is the most events in one POST (default 256).
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	// MinBackoff and MaxBackoff bound the wait between failed POSTs
	// (defaults 250ms and 30s).
	MinBackoff Duration `yaml:"min_backoff,omitempty" json:"min_backoff,omitempty"`
	MaxBackoff Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`

	// Stream is the redis_stream sink's stream (default mcc:events).
	Stream string `yaml:"stream,omitempty" json:"stream,omitempty"`
	// MaxLen caps the stream at about this many entries (0: no cap).
	MaxLen int64 `yaml:"max_len,omitempty" json:"max_len,omitempty"`
}

// File sink defaults, the same at both gateways.
const (
	DefaultFileSinkMaxSize = 100 << 20
	DefaultFileSinkKeep    = 5
)

// sinkKeys are the keys each sink type takes besides type; the first ones
// listed in sinkRequired must be set.
var (
	sinkKeys = map[string][]string{
		SinkLog:         {},
		SinkFile:        {"path", "max_size", "keep"},
		SinkWebhook:     {"url", "header", "spool_dir", "spool_max_bytes", "timeout", "batch_size", "min_backoff", "max_backoff"},
		SinkRedisStream: {"url", "stream", "max_len"},
	}
	sinkRequired = map[string][]string{
		SinkFile:        {"path"},
		SinkWebhook:     {"url", "spool_dir"},
		SinkRedisStream: {"url"},
	}
)

// SinkTypes returns the sink types, sorted.
func SinkTypes() []string {
	out := make([]string, 0, len(sinkKeys))
	for t := range sinkKeys {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// sinkField is a SinkConfig field by its key.
func sinkField(key string) (reflect.StructField, bool) {
	t := reflect.TypeOf(SinkConfig{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// SetKey sets key from its values as a Caddyfile line gives them: `header`
// takes a name and a value, every other key one value, with the syntax of
// the same YAML key (sizes such as 64MiB, durations such as 10s).
func (sc *SinkConfig) SetKey(key string, vals []string) error {
	f, ok := sinkField(key)
	if !ok || key == "type" {
		return fmt.Errorf("unknown sink key %q", key)
	}
	v := reflect.ValueOf(sc).Elem().FieldByIndex(f.Index)
	if v.Kind() == reflect.Map {
		if len(vals) != 2 {
			return fmt.Errorf("%s takes a name and a value", key)
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		if v.MapIndex(reflect.ValueOf(vals[0])).IsValid() {
			return fmt.Errorf("%s %s is given twice", key, vals[0])
		}
		v.SetMapIndex(reflect.ValueOf(vals[0]), reflect.ValueOf(vals[1]))
		return nil
	}
	if len(vals) != 1 {
		return fmt.Errorf("%s takes one value", key)
	}
	s := vals[0]
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case ByteSize:
		n, err := ParseByteSize(s)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		v.SetInt(int64(n))
	case Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		v.SetInt(int64(d))
	case int, int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || v.OverflowInt(n) {
			return fmt.Errorf("%s: want a whole number, got %q", key, truncate(s, 40))
		}
		v.SetInt(n)
	default:
		return fmt.Errorf("%s: unsupported field type %s", key, v.Type()) // a new field's type needs a case here
	}
	return nil
}

// sinkIssue is one problem of a sink list: the entry, its key ("" for the
// whole entry) and the message.
type sinkIssue struct {
	index int
	key   string
	msg   string
}

// checkShape checks what does not depend on placeholders: a known type, only
// that type's keys, the required ones, no negative numbers.
func (sc SinkConfig) checkShape(i int) []sinkIssue {
	keys, ok := sinkKeys[sc.Type]
	if !ok {
		return []sinkIssue{{i, "type", fmt.Sprintf("unknown sink type %q (want %s)", truncate(sc.Type, 40), strings.Join(SinkTypes(), ", "))}}
	}
	var out []sinkIssue
	allowed := map[string]bool{"type": true}
	for _, k := range keys {
		allowed[k] = true
	}
	v := reflect.ValueOf(sc)
	t := v.Type()
	for j := 0; j < t.NumField(); j++ {
		key, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ",")
		fv := v.Field(j)
		if fv.IsZero() {
			continue
		}
		if !allowed[key] {
			out = append(out, sinkIssue{i, key, fmt.Sprintf("the %s sink takes no %s (it takes %s)", sc.Type, key, keyList(keys))})
			continue
		}
		if fv.CanInt() && fv.Int() < 0 {
			out = append(out, sinkIssue{i, key, key + " must not be negative"})
		}
	}
	for _, k := range sinkRequired[sc.Type] {
		f, _ := sinkField(k)
		if v.FieldByIndex(f.Index).IsZero() {
			out = append(out, sinkIssue{i, k, fmt.Sprintf("the %s sink needs %s", sc.Type, k)})
		}
	}
	return out
}

func keyList(keys []string) string {
	if len(keys) == 0 {
		return "nothing"
	}
	return strings.Join(keys, ", ")
}

// Expand returns sc with expand applied to every string value (the
// placeholders of each gateway: Caddy's replacer, or ExpandSecret). Errors
// name the key, never the value.
func (sc SinkConfig) Expand(expand func(v string) (string, error)) (SinkConfig, error) {
	one := func(key string, p *string) error {
		out, err := expand(*p)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		*p = out
		return nil
	}
	out := sc
	var errs []error
	for _, f := range []struct {
		key string
		p   *string
	}{{"path", &out.Path}, {"url", &out.URL}, {"spool_dir", &out.SpoolDir}, {"stream", &out.Stream}} {
		if err := one(f.key, f.p); err != nil {
			errs = append(errs, err)
		}
	}
	if sc.Header != nil {
		out.Header = make(map[string]string, len(sc.Header))
		for name, v := range sc.Header {
			if err := one("header "+name, &v); err != nil {
				errs = append(errs, err)
			}
			out.Header[name] = v
		}
	}
	return out, errors.Join(errs...)
}

// checkResolved checks what needs the expanded values: URLs and headers.
// Messages never contain a header value, a password or a query.
func (sc SinkConfig) checkResolved(i int) []sinkIssue {
	switch sc.Type {
	case SinkWebhook:
		if err := (webhook.Options{URL: sc.URL}).Check(); err != nil {
			return []sinkIssue{{i, "url", err.Error()}}
		}
		if err := sc.webhookOptions(nil).Check(); err != nil {
			return []sinkIssue{{i, "header", err.Error()}}
		}
		if len(sc.Header) > 0 && !confidential(sc.URL) {
			return []sinkIssue{{i, "header", "webhook sink: headers (credentials) are sent only over https://, or over http:// to a loopback address"}}
		}
	case SinkRedisStream:
		if err := redisstream.CheckURL(sc.URL); err != nil {
			return []sinkIssue{{i, "url", err.Error()}}
		}
	}
	return nil
}

// confidential reports whether a request to rawURL cannot be read on the
// network: https, or plain http to a loopback address.
func confidential(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return host == "localhost"
}

// checkList refuses two sinks that would write the same file or spool.
func checkList(sinks []SinkConfig) []sinkIssue {
	var out []sinkIssue
	seen := map[string]int{}
	for i, sc := range sinks {
		var key, place string
		switch sc.Type {
		case SinkFile:
			key, place = "path", sc.Path
		case SinkWebhook:
			key, place = "spool_dir", sc.SpoolDir
		default:
			continue
		}
		if place == "" {
			continue
		}
		place = filepath.Clean(place)
		if first, dup := seen[place]; dup {
			out = append(out, sinkIssue{i, key, fmt.Sprintf("sinks[%d] uses the same %s: each sink needs its own", first, key)})
			continue
		}
		seen[place] = i
	}
	return out
}

// CheckSinks validates sinks whose placeholders are expanded: the one rule
// for both gateways.
func CheckSinks(sinks []SinkConfig) error {
	var errs []error
	for _, is := range sinkIssues(sinks, nil) {
		errs = append(errs, fmt.Errorf("sinks[%d]: %s", is.index, is.msg))
	}
	return errors.Join(errs...)
}

// sinkIssues checks sinks, resolving each with resolve first when it is
// not nil.
func sinkIssues(sinks []SinkConfig, resolve func(SinkConfig) (SinkConfig, error)) []sinkIssue {
	var out []sinkIssue
	resolved := make([]SinkConfig, len(sinks))
	for i, sc := range sinks {
		resolved[i] = sc
		if shape := sc.checkShape(i); len(shape) > 0 {
			out = append(out, shape...)
			continue
		}
		if resolve != nil {
			r, err := resolve(sc)
			if err != nil {
				out = append(out, sinkIssue{i, expandedKey(err), err.Error()})
				continue
			}
			resolved[i] = r
		}
		out = append(out, resolved[i].checkResolved(i)...)
	}
	return append(out, checkList(resolved)...)
}

// expandedKey is the key an Expand error names (its text starts with it).
func expandedKey(err error) string {
	key, _, _ := strings.Cut(err.Error(), ":")
	key, _, _ = strings.Cut(key, " ")
	return key
}

// sinkProblems are the loader's problems with the sinks section, at their
// lines, checked as OpenSinks will open them.
func sinkProblems(sinks []SinkConfig, filename, baseDir string, ix *nodeIndex, files *loadFiles) []Problem {
	var out []Problem
	for _, is := range sinkIssues(sinks, resolverIn(baseDir, files)) {
		field := "sinks[" + strconv.Itoa(is.index) + "]"
		if is.key != "" {
			field += "." + is.key
		}
		// The field names the key already: "sinks[1].url: placeholder …",
		// not "sinks[1].url: url: placeholder …".
		msg := is.msg
		if is.key != "" {
			msg = strings.TrimPrefix(msg, is.key+": ")
		}
		out = append(out, Problem{File: filename, Line: ix.line(field), Field: field, Msg: msg})
	}
	return out
}

// resolverIn expands a sink's placeholders as the fusion file's other
// secrets are ({file.PATH} relative to baseDir; refused in an inline load),
// then resolves its relative file and spool paths against baseDir, like
// every other path in the file.
func resolverIn(baseDir string, files *loadFiles) func(SinkConfig) (SinkConfig, error) {
	return func(sc SinkConfig) (SinkConfig, error) {
		r, err := sc.Expand(func(v string) (string, error) { return files.expand(v, baseDir) })
		if err != nil {
			return r, err
		}
		if r.Path != "" {
			r.Path = absPath(baseDir, r.Path)
		}
		if r.SpoolDir != "" {
			r.SpoolDir = absPath(baseDir, r.SpoolDir)
		}
		return r, nil
	}
}

// OpenSinks opens the file's sinks section (`mcc authz`): placeholders
// expanded, relative paths against the file's directory. On error, the
// sinks already opened are closed. An empty section opens nothing.
func (c *Config) OpenSinks(ctx context.Context, logger *zap.Logger) ([]threat.Sink, error) {
	resolve := resolverIn(filepath.Dir(c.Path), newLoadFiles())
	resolved := make([]SinkConfig, len(c.File.Sinks))
	for i, sc := range c.File.Sinks {
		r, err := resolve(sc)
		if err != nil {
			return nil, fmt.Errorf("sinks[%d]: %w", i, err)
		}
		resolved[i] = r
	}
	if err := CheckSinks(resolved); err != nil {
		return nil, err
	}
	var opened []threat.Sink
	for i, sc := range resolved {
		s, err := sc.Open(ctx, logger)
		if err != nil {
			for _, o := range opened {
				_ = o.Close()
			}
			return nil, fmt.Errorf("sinks[%d]: %w", i, err)
		}
		opened = append(opened, s)
	}
	return opened, nil
}

// Open starts the sink sc describes; sc has its placeholders expanded and
// passed CheckSinks. logger receives the log sink's events and the other
// sinks' failures.
func (sc SinkConfig) Open(ctx context.Context, logger *zap.Logger) (threat.Sink, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	switch sc.Type {
	case SinkLog:
		return threat.NewLogSink(logger.Named("events")), nil
	case SinkFile:
		maxSize, keep := int64(sc.MaxSize), sc.Keep
		if maxSize == 0 {
			maxSize = DefaultFileSinkMaxSize
		}
		if keep == 0 {
			keep = DefaultFileSinkKeep
		}
		s, err := threat.NewFileSink(sc.Path, maxSize, keep)
		if err != nil {
			return nil, fmt.Errorf("file sink %s: %w", sc.Path, err)
		}
		return s, nil
	case SinkWebhook:
		return webhook.New(sc.webhookOptions(logger.Named("webhook")))
	case SinkRedisStream:
		stream := sc.Stream
		if stream == "" {
			stream = redisstream.DefaultStream
		}
		return redisstream.New(ctx, sc.URL, stream, sc.MaxLen, logger.Named("redis_stream"))
	default:
		return nil, fmt.Errorf("unknown sink type %q", truncate(sc.Type, 40))
	}
}

func (sc SinkConfig) webhookOptions(logger *zap.Logger) webhook.Options {
	return webhook.Options{
		URL:           sc.URL,
		Headers:       sc.Header,
		Timeout:       sc.Timeout.Std(),
		BatchSize:     sc.BatchSize,
		SpoolDir:      sc.SpoolDir,
		SpoolMaxBytes: int64(sc.SpoolMaxBytes),
		MinBackoff:    sc.MinBackoff.Std(),
		MaxBackoff:    sc.MaxBackoff.Std(),
		Logger:        logger,
	}
}

// CheckWritten checks a sink as written, before its placeholders are
// expanded (Caddy's adapter, so that a mistake points at its Caddyfile
// line): its keys always, its URL and headers when they hold no
// placeholder. CheckSinks checks the rest once they are expanded.
func (sc SinkConfig) CheckWritten() error {
	issues := sc.checkShape(0)
	if len(issues) == 0 && !sc.hasPlaceholder() {
		issues = sc.checkResolved(0)
	}
	if len(issues) == 0 {
		return nil
	}
	return errors.New(issues[0].msg)
}

func (sc SinkConfig) hasPlaceholder() bool {
	if strings.Contains(sc.URL, "{") {
		return true
	}
	for _, v := range sc.Header {
		if strings.Contains(v, "{") {
			return true
		}
	}
	return false
}
