package fusion_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// watchHour runs Engine.Watch with an hour's safety poll, so that what it
// notices comes from file notification, not the poll.
func watchHour(t *testing.T, e *fusion.Engine) <-chan *fusion.Config {
	t.Helper()
	reloaded := make(chan *fusion.Config, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Watch(ctx, time.Hour, func(c *fusion.Config) { trySend(reloaded, c) }, func(err error) { t.Errorf("reload: %v", err) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return reloaded
}

func waitReload(t *testing.T, reloaded <-chan *fusion.Config, what string) *fusion.Config {
	t.Helper()
	select {
	case c := <-reloaded:
		return c
	case <-waitCtx(t).Done():
		t.Fatalf("no reload after %s", what)
		return nil
	}
}

// An atomic rename-swap of the fusion set file that keeps size and mtime is
// a reload.
func TestWatchRenameSwapSameSizeAndMtime(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	path := c.WriteSetFile(t, "sets.yaml", func(sc *fusion.SetConfig) { sc.Message = "One." })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	e := loadEngine(t, path, fusion.Options{})
	reloaded := watchHour(t, e)
	tmp := c.WriteSetFile(t, "sets.yaml.tmp", func(sc *fusion.SetConfig) { sc.Message = "Two." })
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if cfg := waitReload(t, reloaded, "the swap"); cfg.Sets[c.SetID].Message != "Two." {
		t.Fatalf("message = %q", cfg.Sets[c.SetID].Message)
	}
}

// A file changed after the load but before Watch started is reloaded: the
// watcher's baseline is compared with what the load parsed.
func TestWatchSeesChangeBeforeItStarted(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	path := c.WriteSetFile(t, "sets.yaml", nil)
	e := loadEngine(t, path, fusion.Options{})
	// Revoke the "valid" case's serial in the shared list before Watch.
	valid := c.Case(t, "valid")
	f, err := os.OpenFile(c.RevocationFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(valid.Leaf().SerialNumber.Text(16) + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	reloaded := watchHour(t, e)
	cfg := waitReload(t, reloaded, "a change made before Watch started")
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain}); d.Action == fusion.Allow {
		t.Fatalf("revoked before Watch started, still allowed (sets %v)", cfg.IDs)
	}
}
