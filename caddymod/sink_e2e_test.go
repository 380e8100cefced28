package caddymod

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstream/redisstreamtest"
	"github.com/mccgate/mcc/threat/webhook/webhooktest"
)

// sinkTestConfig is the fail-safe test config with extra sink lines before
// its file sink (the reference for the order of events) and Caddy's log,
// at DEBUG, in logFile.
func sinkTestConfig(t *testing.T, srv serverTLS, corp *fusiontest.Corpus, fileSink, logFile, sinks string) string {
	t.Helper()
	up := newUpstream(t)
	setFile := failSafeSetFile(t, corp, "sinks.yaml", threat.ModeDefense, "Blocked.")
	cfg := failSafeConfig(srv, setFile, fileSink, corp.SetID, up.addr())
	cfg = strings.Replace(cfg, "\t\tsink file", sinks+"\t\tsink file", 1)
	cfg = strings.Replace(cfg, "\t\tlevel ERROR\n", fmt.Sprintf("\t\toutput file %s\n\t\tlevel DEBUG\n", logFile), 1)
	if !strings.Contains(cfg, logFile) || !strings.Contains(cfg, sinks) {
		t.Fatalf("the test config did not take the sinks and the log file:\n%s", cfg)
	}
	return cfg
}

// produceEvents makes n requests without a certificate: n events.
func produceEvents(t *testing.T, srv serverTLS, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		newClient(t, srv, nil, otherIP).mustGet(t, "/", "Accept: application/json")
	}
}

// eventIDs are the ids of evs, in order.
func eventIDs(evs []*threat.Event) []string {
	ids := make([]string, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

// adminConfig is what Caddy serves on its admin /config.
func adminConfig(t *testing.T) string {
	t.Helper()
	resp, err := adminClient().Get(fmt.Sprintf("http://localhost:%d/config/", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /config/: %d", resp.StatusCode)
	}
	return string(body)
}

// assertNoSecret fails if secret is in any of the named texts.
func assertNoSecret(t *testing.T, secret string, texts map[string]string) {
	t.Helper()
	for name, text := range texts {
		if strings.Contains(text, secret) {
			t.Errorf("%s shows the secret", name)
		}
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSinkWebhookCaddyfile: `sink webhook URL { ... }` in the Caddyfile
// delivers every event to a real HTTP receiver; events made while the
// receiver's listener is closed wait in the spool on disk and arrive once
// it listens again, in order (the order of the file sink next to it), none
// lost, each id with one content. The Authorization header comes from a
// {file.PATH} placeholder: the receiver gets it, and neither Caddy's
// /config, its log nor the events show it.
func TestSinkWebhookCaddyfile(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	dir := t.TempDir()
	const token = "wh-s3cret-7f3a9c"
	tokenFile := filepath.Join(dir, "webhook-token")
	writeFile(t, tokenFile, []byte(token+"\n"), 0o600)
	rcv := webhooktest.NewReceiver(t)
	rcv.RequireHeader("Authorization", "Bearer "+token)
	fileSink, logFile, spool := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "caddy.log"), filepath.Join(dir, "spool")
	placeholder := "{file." + tokenFile + "}"
	loadCaddyfile(t, sinkTestConfig(t, srv, corp, fileSink, logFile, fmt.Sprintf(`		sink webhook %s {
			spool_dir %s
			header Authorization "Bearer %s"
			batch_size 2
			min_backoff 20ms
			max_backoff 200ms
		}
`, rcv.URL(), spool, placeholder)))

	produceEvents(t, srv, 3)
	rcv.WaitDistinct(3)

	rcv.Stop()
	produceEvents(t, srv, 5)
	waitEvents(t, fileSink, 8)
	// The five are on disk, not delivered: the receiver is gone.
	segs, _ := filepath.Glob(filepath.Join(spool, "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no spool segment while the receiver is down")
	}
	if n := rcv.Distinct(); n != 3 {
		t.Fatalf("receiver has %d events while down, want 3", n)
	}

	rcv.Start()
	rcv.WaitDistinct(8)
	want := eventIDs(sinkEvents(t, fileSink))
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), want)
	if errs := rcv.Errs(); len(errs) > 0 {
		t.Fatalf("receiver refused POSTs (wrong or missing Authorization?): %v", errs)
	}
	if h := rcv.Headers(); h[len(h)-1].Get("Authorization") != "Bearer "+token {
		t.Fatal("the receiver did not get the token from the placeholder")
	}

	cfg := adminConfig(t)
	if !strings.Contains(cfg, placeholder) {
		t.Errorf("the admin /config does not show the placeholder %s", placeholder)
	}
	assertNoSecret(t, token, map[string]string{
		"the admin /config": cfg,
		"Caddy's log":       readText(t, logFile),
		"the file sink":     readText(t, fileSink),
	})
	for _, a := range rcv.Arrivals() {
		if strings.Contains(a.Raw, token) {
			t.Fatal("an event holds the token")
		}
	}
}

// TestSinkRedisStreamCaddyfile: `sink redis_stream URL { ... }` appends
// every event to a stream of a real redis-server that requires a password,
// given by an {env.NAME} placeholder: XRANGE shows each event, with the
// schema's fields, in the order of the file sink, and the password is in
// neither /config nor the log.
func TestSinkRedisStreamCaddyfile(t *testing.T) {
	resetCaddy(t)
	rs := redistest.New(t)
	password := rs.RequirePassword()
	t.Setenv("MCC_TEST_STREAM_PASSWORD", password)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	dir := t.TempDir()
	fileSink, logFile := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "caddy.log")
	url := "redis://:{env.MCC_TEST_STREAM_PASSWORD}@" + rs.Addr() + "/0"
	loadCaddyfile(t, sinkTestConfig(t, srv, corp, fileSink, logFile, fmt.Sprintf(`		sink redis_stream %s {
			stream mcc:caddy-test
			max_len 1000
		}
`, url)))

	produceEvents(t, srv, 4)
	want := eventIDs(waitEvents(t, fileSink, 4))
	if got := redisstreamtest.IDs(t, rs.Addr(), password, "mcc:caddy-test", len(want)); !slices.Equal(got, want) {
		t.Fatalf("stream ids %v, want the file sink's %v", got, want)
	}
	assertNoSecret(t, password, map[string]string{
		"the admin /config": adminConfig(t),
		"Caddy's log":       readText(t, logFile),
	})
}

// A credential written in the Caddyfile itself is used, but Caddy serves it
// on /config: the mcc app warns, naming the header, never its value.
func TestSinkInlineSecretWarns(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	dir := t.TempDir()
	const token = "inline-t0ken-5d1e"
	rcv := webhooktest.NewReceiver(t)
	rcv.RequireHeader("X-Api-Key", token)
	fileSink, logFile := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "caddy.log")
	loadCaddyfile(t, sinkTestConfig(t, srv, corp, fileSink, logFile, fmt.Sprintf(`		sink webhook %s {
			spool_dir %s
			header X-Api-Key %s
		}
`, rcv.URL(), filepath.Join(dir, "spool"), token)))
	produceEvents(t, srv, 1)
	rcv.WaitDistinct(1)
	log := readText(t, logFile)
	if !strings.Contains(log, "webhook sink's X-Api-Key header is written in Caddy's config") {
		t.Errorf("no warning about the inline header; log:\n%s", log)
	}
	assertNoSecret(t, token, map[string]string{"Caddy's log": log})
}

// A reload that keeps a webhook's spool directory but changes its settings
// hands the spool over: the running sink closes, leaving what it could not
// deliver, and the new one resumes it with the new settings. Nothing is
// lost or reordered across the reload, and once no config uses the sink it
// is closed.
func TestSinkWebhookReloadHandsOver(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	dir := t.TempDir()
	rcv := webhooktest.NewReceiver(t)
	fileSink, logFile, spool := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "caddy.log"), filepath.Join(dir, "spool")
	config := func(generation int) string {
		return sinkTestConfig(t, srv, corp, fileSink, logFile, fmt.Sprintf(`		sink webhook %s {
			spool_dir %s
			header X-Config-Generation %d
			min_backoff 20ms
			max_backoff 200ms
		}
`, rcv.URL(), spool, generation))
	}
	loadCaddyfile(t, config(1))
	produceEvents(t, srv, 3)
	rcv.WaitDistinct(3)

	rcv.Stop()
	produceEvents(t, srv, 2)
	waitEvents(t, fileSink, 5)
	loadCaddyfile(t, config(2))
	produceEvents(t, srv, 2)
	waitEvents(t, fileSink, 7)
	rcv.Start()
	rcv.WaitDistinct(7)
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), eventIDs(sinkEvents(t, fileSink)))
	if h := rcv.Headers(); h[len(h)-1].Get("X-Config-Generation") != "2" {
		t.Errorf("after the reload the sink sends generation %q, want 2", h[len(h)-1].Get("X-Config-Generation"))
	}
	if n := poolLen(sinkPool); n != 2 {
		t.Errorf("%d running sinks, want 2 (the webhook and the file)", n)
	}
	resetCaddy(t)
	if n := poolLen(sinkPool); n != 0 {
		t.Errorf("%d sinks still running after the mcc app was unloaded", n)
	}
}
