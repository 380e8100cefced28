package caddymod

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// sinkGlobal is a Caddyfile with body in its mcc option.
func sinkGlobal(body string) string {
	return "{\n\tmcc {\n" + body + "\n\t}\n}\n:8443 {\n\trespond ok\n}\n"
}

// The sink and store lines become modules of the mcc.sinks and mcc.stores
// namespaces, with the fusion file's keys; placeholders stay placeholders.
func TestAdaptSinksAndStoreModules(t *testing.T) {
	cfg, err := adapt(t, sinkGlobal(`		store redis {env.MCC_REDIS_URL}
		sink log
		sink file /var/log/mcc/events.jsonl max_size 1MiB keep 2
		sink webhook https://events.example/v1 {
			spool_dir /var/lib/mcc/spool
			spool_max_bytes 16MiB
			header Authorization "Bearer {file./run/secrets/webhook-token}"
			header X-Tenant bank
			timeout 5s
			batch_size 10
			min_backoff 100ms
			max_backoff 1m
		}
		sink redis_stream redis://:{env.MCC_STREAM_PASSWORD}@10.0.0.5:6379/0 {
			stream mcc:events
			max_len 100000
		}`))
	if err != nil {
		t.Fatal(err)
	}
	assertJSON(t, "store", dig(t, cfg, "apps", "mcc", "store"), `{"type": "redis", "url": "{env.MCC_REDIS_URL}"}`)
	assertJSON(t, "sinks", dig(t, cfg, "apps", "mcc", "sinks"), fmt.Sprintf(`[
		{"type": "log"},
		{"type": "file", "path": "/var/log/mcc/events.jsonl", "max_size": 1048576, "keep": 2},
		{"type": "webhook", "url": "https://events.example/v1", "spool_dir": "/var/lib/mcc/spool", "spool_max_bytes": 16777216,
		 "header": {"Authorization": "Bearer {file./run/secrets/webhook-token}", "X-Tenant": "bank"},
		 "timeout": %d, "batch_size": 10, "min_backoff": %d, "max_backoff": %d},
		{"type": "redis_stream", "url": "redis://:{env.MCC_STREAM_PASSWORD}@10.0.0.5:6379/0", "stream": "mcc:events", "max_len": 100000}
	]`, 5_000_000_000, 100_000_000, 60_000_000_000))
}

// A mistake in a sink line is refused with its Caddyfile line, and never
// repeats a secret written in it.
func TestAdaptSinkErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"no type", "\t\tsink", "want a sink type"},
		{"webhook without URL", "\t\tsink webhook", "sink webhook: missing url, at Caddyfile:3"},
		{"webhook without spool", "\t\tsink webhook https://h/x", "the webhook sink needs spool_dir"},
		{"unknown key", "\t\tsink webhook https://h/x {\n\t\t\tspool_dir /s\n\t\t\tcolour red\n\t\t}", `unknown sink key "colour", at Caddyfile:5`},
		{"key of another type", "\t\tsink redis_stream redis://h:6379/0 {\n\t\t\tspool_dir /s\n\t\t}", "the redis_stream sink takes no spool_dir"},
		{"url twice", "\t\tsink webhook https://h/x {\n\t\t\turl https://other/x\n\t\t}", "the url is the first argument"},
		{"log with arguments", "\t\tsink log extra", "extra needs a value"},
		{"header injection", "\t\tsink webhook https://h/x {\n\t\t\tspool_dir /s\n\t\t\theader Authorization \"hunter2\r\nX-Evil: 1\"\n\t\t}", "control character"},
		{"reserved header", "\t\tsink webhook https://h/x {\n\t\t\tspool_dir /s\n\t\t\theader Host evil.example\n\t\t}", "cannot be configured"},
		{"token over plain http", "\t\tsink webhook http://events.example/x {\n\t\t\tspool_dir /s\n\t\t\theader Authorization hunter2\n\t\t}", "only over https://"},
		{"webhook URL", "\t\tsink webhook ftp://u:hunter2@h/x {\n\t\t\tspool_dir /s\n\t\t}", "http:// or https://"},
		{"redis_stream URL", "\t\tsink redis_stream http://:hunter2@h/0", "invalid URL scheme"},
		{"bad duration", "\t\tsink webhook https://h/x {\n\t\t\tspool_dir /s\n\t\t\ttimeout soon\n\t\t}", "timeout: invalid duration"},
		{"store twice", "\t\tstore memory\n\t\tstore memory", "store may be given only once"},
	} {
		_, err := adapt(t, sinkGlobal(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: adapt error = %v, want it to contain %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error shows the secret: %v", tc.name, err)
		}
	}
}

// A JSON config written before stores were modules ("store": a string)
// still loads, and its store works; two sinks on one spool directory are
// refused at load with the running config kept.
func TestStoreStringAndSinkListInJSON(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	dir := t.TempDir()
	setFile := failSafeSetFile(t, corp, "json.yaml", threat.ModeDefense, "Blocked.")
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(failSafeConfig(srv, setFile, filepath.Join(dir, "events.jsonl"), corp.SetID, up.addr())), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	mcc := dig(t, cfg, "apps", "mcc").(map[string]any)
	mcc["store"] = "memory"
	legacy, _ := json.Marshal(cfg)
	if status, body := postLoad(t, string(legacy), "application/json"); status != http.StatusOK {
		t.Fatalf("a string store: %d %s", status, body)
	}
	if r := newClient(t, srv, nil, otherIP).mustGet(t, "/", "Accept: application/json"); r.status != http.StatusForbidden {
		t.Fatalf("request without a certificate: %d %q, want 403", r.status, r.body)
	}
	if _, ok := runningState(t).store.store.(*threat.MemoryStore); !ok {
		t.Errorf("store %T, want the memory store", runningState(t).store.store)
	}

	spool := filepath.Join(dir, "spool")
	mcc["sinks"] = []any{
		map[string]any{"type": "webhook", "url": "https://a.example/x", "spool_dir": spool},
		map[string]any{"type": "webhook", "url": "https://b.example/x", "spool_dir": spool + "/"},
	}
	twice, _ := json.Marshal(cfg)
	status, body := postLoad(t, string(twice), "application/json")
	if status == http.StatusOK || !strings.Contains(body, "uses the same spool_dir") {
		t.Fatalf("two sinks on one spool: %d %s", status, body)
	}
	if r := newClient(t, srv, nil, otherIP).mustGet(t, "/", "Accept: application/json"); r.status != http.StatusForbidden {
		t.Fatalf("after the refused config: %d %q, want 403 from the running one", r.status, r.body)
	}
}
