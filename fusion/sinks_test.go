package fusion

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// sinkSamples is a value for every sink key, as YAML and as the
// Caddyfile's arguments.
var sinkSamples = map[string]struct {
	yaml     string
	caddyArg []string
}{
	"path":            {`"/var/log/mcc/events.jsonl"`, []string{"/var/log/mcc/events.jsonl"}},
	"max_size":        {`16MiB`, []string{"16MiB"}},
	"keep":            {`3`, []string{"3"}},
	"url":             {`"https://events.example/v1"`, []string{"https://events.example/v1"}},
	"header":          {`{X-Api-Key: "k {env.X}"}`, []string{"X-Api-Key", "k {env.X}"}},
	"spool_dir":       {`/var/lib/mcc/spool`, []string{"/var/lib/mcc/spool"}},
	"spool_max_bytes": {`1MiB`, []string{"1MiB"}},
	"timeout":         {`5s`, []string{"5s"}},
	"batch_size":      {`10`, []string{"10"}},
	"min_backoff":     {`10ms`, []string{"10ms"}},
	"max_backoff":     {`1m`, []string{"1m"}},
	"stream":          {`"mcc:events"`, []string{"mcc:events"}},
	"max_len":         {`100000`, []string{"100000"}},
}

// decodeSinks decodes a sinks section strictly, as the loader does.
func decodeSinks(t *testing.T, doc string) ([]SinkConfig, *nodeIndex) {
	t.Helper()
	var v struct {
		Sinks []SinkConfig `yaml:"sinks"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", doc, err)
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		t.Fatal(err)
	}
	return v.Sinks, newNodeIndex(&node)
}

// Every key has one name and one syntax in the fusion file and in the
// Caddyfile: the YAML decode and SetKey give the same config.
func TestSinkKeysSameInYAMLAndCaddyfile(t *testing.T) {
	rt := reflect.TypeOf(SinkConfig{})
	for i := 0; i < rt.NumField(); i++ {
		key, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
		if key == "type" {
			continue
		}
		s, ok := sinkSamples[key]
		if !ok {
			t.Errorf("key %s has no sample here: add one", key)
			continue
		}
		fromYAML, _ := decodeSinks(t, "sinks:\n  - "+key+": "+s.yaml+"\n")
		var fromCaddy SinkConfig
		if err := fromCaddy.SetKey(key, s.caddyArg); err != nil {
			t.Errorf("SetKey(%s, %q): %v", key, s.caddyArg, err)
			continue
		}
		if !reflect.DeepEqual(fromYAML[0], fromCaddy) {
			t.Errorf("%s: YAML gives %+v, the Caddyfile %+v", key, fromYAML[0], fromCaddy)
		}
	}
	for _, typ := range SinkTypes() {
		for _, k := range sinkKeys[typ] {
			if _, ok := sinkField(k); !ok {
				t.Errorf("sink type %s lists key %s, which SinkConfig lacks", typ, k)
			}
		}
	}
}

func TestSinkSetKeyRefuses(t *testing.T) {
	for _, tc := range []struct {
		key  string
		vals []string
		want string
	}{
		{"type", []string{"log"}, "unknown sink key"},
		{"color", []string{"red"}, "unknown sink key"},
		{"keep", []string{"-1"}, "whole number"},
		{"keep", []string{"1", "2"}, "takes one value"},
		{"max_len", []string{"99999999999999999999"}, "whole number"},
		{"timeout", []string{"soon"}, "invalid duration"},
		{"max_size", []string{"big"}, "invalid size"},
		{"header", []string{"X-Only-Name"}, "a name and a value"},
	} {
		var sc SinkConfig
		err := sc.SetKey(tc.key, tc.vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetKey(%s, %q) = %v, want %q", tc.key, tc.vals, err, tc.want)
		}
	}
	var sc SinkConfig
	_ = sc.SetKey("header", []string{"X-A", "1"})
	if err := sc.SetKey("header", []string{"X-A", "2"}); err == nil {
		t.Error("a header given twice was taken")
	}
}

// CheckSinks is the one rule for both gateways. What an attacker or a
// careless operator writes is refused, and no error repeats a secret.
func TestCheckSinks(t *testing.T) {
	const secret = "hunter2"
	webhook := func(mod func(*SinkConfig)) SinkConfig {
		sc := SinkConfig{Type: SinkWebhook, URL: "https://events.example/v1", SpoolDir: "/var/lib/mcc/spool"}
		if mod != nil {
			mod(&sc)
		}
		return sc
	}
	for _, tc := range []struct {
		name  string
		sinks []SinkConfig
		want  string // "" = accepted
	}{
		{"log", []SinkConfig{{Type: SinkLog}}, ""},
		{"webhook", []SinkConfig{webhook(nil)}, ""},
		{"webhook with a token over https", []SinkConfig{webhook(func(s *SinkConfig) { s.Header = map[string]string{"Authorization": "Bearer " + secret} })}, ""},
		{"webhook with a token to loopback", []SinkConfig{webhook(func(s *SinkConfig) {
			s.URL, s.Header = "http://127.0.0.1:9/x", map[string]string{"Authorization": secret}
		})}, ""},
		{"redis_stream", []SinkConfig{{Type: SinkRedisStream, URL: "rediss://:" + secret + "@redis:6380/0"}}, ""},
		{"unknown type", []SinkConfig{{Type: "kafka"}}, `unknown sink type "kafka"`},
		{"key of another type", []SinkConfig{{Type: SinkLog, Path: "/x"}}, "the log sink takes no path"},
		{"file without path", []SinkConfig{{Type: SinkFile}}, "the file sink needs path"},
		{"webhook without spool", []SinkConfig{{Type: SinkWebhook, URL: "https://h/x"}}, "needs spool_dir"},
		{"negative", []SinkConfig{{Type: SinkFile, Path: "/x", Keep: -1}}, "keep must not be negative"},
		{"webhook not http", []SinkConfig{webhook(func(s *SinkConfig) { s.URL = "ftp://u:" + secret + "@h/x" })}, "http:// or https://"},
		{"webhook bad URL", []SinkConfig{webhook(func(s *SinkConfig) { s.URL = "https://u:" + secret + "@h:port/x" })}, "invalid URL"},
		{"header injection", []SinkConfig{webhook(func(s *SinkConfig) {
			s.Header = map[string]string{"Authorization": "Bearer " + secret + "\r\nX-Evil: 1"}
		})}, "control character"},
		{"header name", []SinkConfig{webhook(func(s *SinkConfig) { s.Header = map[string]string{"X Bad": secret} })}, "not an HTTP token"},
		{"reserved header", []SinkConfig{webhook(func(s *SinkConfig) { s.Header = map[string]string{"content-length": "1"} })}, "cannot be configured"},
		{"token over plain http", []SinkConfig{webhook(func(s *SinkConfig) {
			s.URL, s.Header = "http://events.example/v1", map[string]string{"Authorization": secret}
		})}, "only over https://"},
		{"redis_stream not redis", []SinkConfig{{Type: SinkRedisStream, URL: "http://:" + secret + "@h/0"}}, "invalid URL scheme"},
		{"redis_stream bad db", []SinkConfig{{Type: SinkRedisStream, URL: "redis://:" + secret + "@h:6379/x"}}, "invalid database"},
		{"two sinks, one spool", []SinkConfig{webhook(nil), webhook(func(s *SinkConfig) { s.URL = "https://other/x"; s.SpoolDir += "/" })}, "sinks[0] uses the same spool_dir"},
		{"two sinks, one file", []SinkConfig{{Type: SinkFile, Path: "/x/e"}, {Type: SinkFile, Path: "/x/./e"}}, "same path"},
	} {
		err := CheckSinks(tc.sinks)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("%s: error shows the secret: %v", tc.name, err)
		}
	}
}

// The loader's problems point at the key's line; placeholders are expanded
// (against the file's directory) before the URL and headers are checked,
// and an error names the placeholder, never the value.
func TestSinkProblemsLines(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("Bearer ok\r\nX-Evil: hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MCC_TEST_SINK_URL", "ftp://u:hunter2@h/x")
	doc := `sinks:
  - type: log
  - type: webhook
    url: https://events.example/v1
    spool_dir: spool
    header:
      Authorization: "{file.token}"
  - type: redis_stream
    url: "{env.MCC_TEST_SINK_URL}"
  - type: file
    keep: 2
  - type: log
    stream: x
  - type: redis_stream
    url: "redis://{env.MCC_TEST_SINK_UNSET}/0"
`
	sinks, ix := decodeSinks(t, doc)
	ps := sinkProblems(sinks, "f.yaml", dir, ix, newLoadFiles())
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{6, "sinks[1].header", "control character"},
		{9, "sinks[2].url", "invalid URL scheme"},
		{10, "sinks[3].path", "needs path"},
		{13, "sinks[4].stream", "takes no stream"},
		{15, "sinks[5].url", "MCC_TEST_SINK_UNSET"},
	}
	if len(ps) != len(want) {
		t.Fatalf("problems %v, want %d", ps, len(want))
	}
	for i, w := range want {
		p := ps[i]
		if p.Line != w.line || p.Field != w.field || !strings.Contains(p.Msg, w.msg) || p.File != "f.yaml" {
			t.Errorf("problem %d = %+v, want line %d, field %s, %q", i, p, w.line, w.field, w.msg)
		}
		if strings.Contains(p.Msg, "hunter2") {
			t.Errorf("problem %d shows the secret: %s", i, p.Msg)
		}
	}
}

// OpenSinks opens the section with placeholders expanded and relative
// paths against the fusion file's directory.
func TestOpenSinks(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MCC_TEST_SINK_FILE", "events.jsonl")
	cfg := &Config{Path: filepath.Join(dir, "fusion.yaml"), File: File{Sinks: []SinkConfig{
		{Type: SinkLog},
		{Type: SinkFile, Path: "{env.MCC_TEST_SINK_FILE}"},
		{Type: SinkWebhook, URL: "https://events.example/v1", SpoolDir: "spool"},
	}}}
	sinks, err := cfg.OpenSinks(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sinks {
		if err := s.Close(); err != nil {
			t.Errorf("closing %s: %v", s.Name(), err)
		}
	}
	if len(sinks) != 3 {
		t.Fatalf("%d sinks, want 3", len(sinks))
	}
	for _, p := range []string{"events.jsonl", "spool"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s not next to the fusion file: %v", p, err)
		}
	}

	cfg.File.Sinks = append(cfg.File.Sinks, SinkConfig{Type: SinkRedisStream, URL: "redis://{env.MCC_TEST_SINK_UNSET}/0"})
	if _, err := cfg.OpenSinks(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "sinks[3]: url") {
		t.Fatalf("an unset placeholder: %v", err)
	}
}
