package fusion_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestRevocationHotReload revokes a certificate while evaluators run: once
// the reload has returned (ReloadRevocations) or been announced (Watch), no
// evaluation that starts afterwards may allow the certificate.
func TestRevocationHotReload(t *testing.T) {
	for _, via := range []string{"ReloadRevocations", "Watch"} {
		t.Run(via, func(t *testing.T) {
			c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
			e := loadEngine(t, c.SetFile, fusion.Options{})
			victim := c.Issue(t, nil, nil)
			if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Action != fusion.Allow {
				t.Fatalf("before revocation: %+v", d)
			}

			var (
				reloaded   atomic.Bool
				evals      atomic.Int64
				afterEvals atomic.Int64
				violations atomic.Int64
				wrong      atomic.Value
			)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						after := reloaded.Load()
						d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain, ClientIP: "192.0.2.9"})
						evals.Add(1)
						if !after {
							continue
						}
						afterEvals.Add(1)
						if d.Action == fusion.Allow || d.Reason != threat.ReasonCertRevoked {
							violations.Add(1)
							wrong.Store(d)
						}
					}
				}()
			}
			waitUntil(t, "evaluations before the reload", func() bool { return evals.Load() > 200 })

			appendRevoked(t, c.RevocationFile, victim.Leaf())
			switch via {
			case "ReloadRevocations":
				if err := e.ReloadRevocations(); err != nil {
					t.Fatal(err)
				}
			case "Watch":
				done := make(chan *fusion.Config, 1)
				startWatch(t, e, func(cfg *fusion.Config) { trySend(done, cfg) }, func(err error) { t.Errorf("watch: %v", err) })
				select {
				case <-done:
				case <-time.After(60 * time.Second):
					t.Fatal("Watch did not pick up the revocation list change")
				}
			}
			reloaded.Store(true)
			waitUntil(t, "evaluations after the reload", func() bool { return afterEvals.Load() > 200 })
			cancel()
			wg.Wait()
			if n := violations.Load(); n > 0 {
				t.Fatalf("%d evaluations after the reload did not block the revoked certificate; one was %+v", n, wrong.Load())
			}
		})
	}
}

// TestWatchBadFileKeepsServing: a broken file is reported and the last good
// config keeps serving; the fixed file is then picked up.
func TestWatchBadFileKeepsServing(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	good, err := os.ReadFile(c.SetFile)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan *fusion.Config, 4)
	errs := make(chan error, 4)
	startWatch(t, e, func(cfg *fusion.Config) { trySend(reloads, cfg) }, func(err error) { trySend(errs, err) })

	// os.WriteFile truncates, then writes: on a loaded machine the watcher
	// may read the file in between and report it empty. That is a refused
	// reload like any other (the last good config keeps serving); what must
	// follow is the report of the real problem.
	first := e.Config()
	if err := os.WriteFile(c.SetFile, append(append([]byte{}, good...), []byte("bogus_key: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(60 * time.Second)
	for reported := false; !reported; {
		select {
		case err := <-errs:
			var le *fusion.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %v", err)
			}
			reported = le.Problems[0].Field == "bogus_key"
		case <-reloads:
			t.Fatal("bad file was loaded")
		case <-deadline:
			t.Fatal("Watch did not report the bad file")
		}
	}
	if e.Config() != first {
		t.Fatal("config replaced by a bad file")
	}
	if d := e.Evaluate(context.Background(), c.SetID, request(c.Case(t, "valid"), "192.0.2.1")); d.Action != fusion.Allow {
		t.Fatalf("not serving the last good config: %+v", d)
	}

	fixed := append(append([]byte{}, good...), []byte("store: memory\n")...)
	if err := os.WriteFile(c.SetFile, fixed, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline = time.After(60 * time.Second)
	for {
		select {
		case cfg := <-reloads:
			if e.Config() != cfg || cfg.File.Store != "memory" {
				t.Fatalf("reloaded config not served")
			}
			return
		case err := <-errs:
			// Only a half-written read may be refused on the way.
			if !strings.Contains(err.Error(), "empty file") {
				t.Fatalf("good file refused: %v", err)
			}
		case <-deadline:
			t.Fatal("Watch did not pick up the fixed file")
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatchRetriesAFileThatNamesAMissingFile: the fusion file is written
// first and names a revocation list that does not exist yet; when the list
// appears (the fusion file untouched, so no watch fires for it), the
// refused file is loaded on a later tick and the list is enforced.
func TestWatchRetriesAFileThatNamesAMissingFile(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	reloads := make(chan *fusion.Config, 16)
	errs := make(chan error, 16)
	startWatch(t, e, func(cfg *fusion.Config) { trySend(reloads, cfg) }, func(err error) { trySend(errs, err) })

	list := filepath.Join(c.Dir, "revoked-later.txt")
	c.WriteSetFile(t, "fusion-sets.yaml", func(sc *fusion.SetConfig) {
		sc.Revocation.Files = append(sc.Revocation.Files, list)
	})
	deadline := time.After(60 * time.Second)
	for reported := false; !reported; {
		select {
		case err := <-errs:
			reported = strings.Contains(err.Error(), "revoked-later.txt")
		case <-reloads:
			t.Fatal("a file naming a missing revocation list was loaded")
		case <-deadline:
			t.Fatal("Watch did not report the missing revocation list")
		}
	}
	valid := c.Case(t, "valid")
	serial := fmt.Sprintf("%x", valid.Leaf().SerialNumber)
	if err := os.WriteFile(list, []byte(serial+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reloads:
	case <-deadline:
		t.Fatal("the refused file was not tried again once the revocation list existed")
	}
	if d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1")); d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("after the list appeared: %+v, want CERT_REVOKED", d)
	}
}
