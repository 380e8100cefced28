package webhook

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
	"github.com/mccgate/mcc/threat/webhook/webhooktest"
)

func testOptions(url, dir string) Options {
	return Options{
		URL:        url,
		Headers:    map[string]string{"Authorization": testToken},
		SpoolDir:   dir,
		BatchSize:  16,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Timeout:    10 * time.Second,
	}
}

func newSink(t *testing.T, o Options) *Sink {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// gateway makes numbered events and hands them to a sink the way the
// pipeline does: in batches, from one goroutine.
type gateway struct {
	t   *testing.T
	ids []string
}

func (g *gateway) emit(s *Sink, n, batch int) {
	g.t.Helper()
	for n > 0 {
		b := make([]*threat.Event, 0, batch)
		for range min(batch, n) {
			e := threattest.Event(threat.ReasonCertUntrusted)
			g.ids = append(g.ids, e.ID)
			b = append(b, e)
		}
		if err := s.Deliver(context.Background(), b); err != nil {
			g.t.Fatalf("Deliver: %v", err)
		}
		n -= len(b)
	}
}

func waitStat(t *testing.T, s *Sink, what string, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !ok(s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: stats %+v", what, s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReceiverDownThenUp: the receiver answers 503, then refuses
// connections, while the gateway restarts; then it comes back and loses the
// first responses. Every event must arrive, first arrivals in order, with
// duplicates only as the same event again.
func TestReceiverDownThenUp(t *testing.T) {
	rcv := newReceiver(t)
	dir := t.TempDir()
	o := testOptions(rcv.URL()+"?token=s3cret", dir)
	core, logs := observer.New(zapcore.DebugLevel)
	o.Logger = zap.New(core)
	g := &gateway{t: t}
	defer func() {
		for _, e := range logs.All() {
			if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, "s3cret") || strings.Contains(line, "t0ken") {
				t.Errorf("a log line leaks a secret: %s", line)
			}
		}
	}()

	rcv.SetMode(webhooktest.Down)
	s1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	g.emit(s1, 200, 10)
	waitStat(t, s1, "retries while the receiver answers 503", func(st Stats) bool { return st.Retried >= 3 })

	rcv.Stop()
	r0 := s1.Stats().Retried
	g.emit(s1, 200, 10)
	waitStat(t, s1, "retries while connections are refused", func(st Stats) bool { return st.Retried >= r0+3 })

	// Gateway restart: nothing spooled may be lost.
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s1.Stats(); st.Pending != 400 || st.Delivered != 0 || st.Dropped != 0 {
		t.Fatalf("after Close: %+v, want 400 pending", st)
	}
	s2 := newSink(t, o)
	if st := s2.Stats(); st.Pending != 400 {
		t.Fatalf("after restart: %d pending, want 400", st.Pending)
	}
	g.emit(s2, 100, 7)

	rcv.SetMode(webhooktest.LoseResponse)
	rcv.Start()
	deadline := time.Now().Add(waitFor)
	for len(rcv.Arrivals()) < 2*o.BatchSize { // two batches arrived, their responses lost
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d events with lost responses", len(rcv.Arrivals()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	rcv.SetMode(webhooktest.Up)
	rcv.WaitDistinct(len(g.ids))
	waitStat(t, s2, "an empty spool", func(st Stats) bool { return st.Pending == 0 })

	arrivals := rcv.Arrivals()
	webhooktest.CheckFirstArrivals(t, arrivals, g.ids)
	if len(arrivals) == len(g.ids) {
		t.Errorf("no duplicates although responses were lost: the test did not exercise redelivery")
	}
	if errs := rcv.Errs(); len(errs) > 0 {
		t.Fatalf("receiver saw %d bad events or requests, first: %v", len(errs), errs[0])
	}
	st := s2.Stats()
	if st.Delivered != 500 || st.Dropped != 0 || st.Rejected != 0 || st.Spooled != 100 {
		t.Errorf("stats of the restarted sink = %+v, want 500 delivered, 100 spooled by it, none dropped", st)
	}
	if n := logs.FilterMessage("webhook sink: receiver failing; events stay spooled and are retried").Len(); n < 1 || n > 3 {
		t.Errorf("logged the failure %d times; want once per outage", n)
	}
	if logs.FilterMessage("webhook sink: resuming delivery of spooled events").Len() != 1 {
		t.Error("the restarted sink did not say it resumed spooled events")
	}
}

// TestRestartResumesAtCursor: what was delivered before a restart is not
// sent again.
func TestRestartResumesAtCursor(t *testing.T) {
	rcv := newReceiver(t)
	dir := t.TempDir()
	o := testOptions(rcv.URL(), dir)
	g := &gateway{t: t}
	s1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	g.emit(s1, 100, 9)
	rcv.WaitDistinct(100)
	waitStat(t, s1, "an empty spool", func(st Stats) bool { return st.Pending == 0 })
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := newSink(t, o)
	g.emit(s2, 10, 10)
	rcv.WaitDistinct(110)
	waitStat(t, s2, "an empty spool", func(st Stats) bool { return st.Pending == 0 })
	arrivals := rcv.Arrivals()
	webhooktest.CheckFirstArrivals(t, arrivals, g.ids)
	if len(arrivals) != 110 {
		t.Errorf("%d arrivals for 110 events: a restart resent delivered events", len(arrivals))
	}
}

// TestSpoolFullDropsOldest: with the receiver down, a full spool drops its
// oldest events, counts and logs them, and delivers the newest in order.
func TestSpoolFullDropsOldest(t *testing.T) {
	rcv := newReceiver(t)
	rcv.SetMode(webhooktest.Down)
	o := testOptions(rcv.URL(), t.TempDir())
	o.SpoolMaxBytes = 64 << 10
	core, logs := observer.New(zapcore.InfoLevel)
	o.Logger = zap.New(core)
	s := newSink(t, o)
	g := &gateway{t: t}
	g.emit(s, 500, 8) // about ten times what fits

	st := s.Stats()
	if st.Dropped == 0 || st.Spooled != 500 || st.Dropped+uint64(st.Pending) != 500 {
		t.Fatalf("stats = %+v, want drops and spooled = dropped + pending = 500", st)
	}
	if st.SpoolBytes > o.SpoolMaxBytes {
		t.Fatalf("spool holds %d bytes, over its %d limit", st.SpoolBytes, o.SpoolMaxBytes)
	}
	if logs.FilterMessage("webhook sink: spool full, dropped the oldest events").Len() == 0 {
		t.Fatal("drops were not logged")
	}
	// Let the sender fail twice more so that its batch in hand was read
	// after the last drop (see peek/commit), then bring the receiver up.
	r0 := st.Retried
	waitStat(t, s, "two more retries", func(st Stats) bool { return st.Retried >= r0+2 })
	rcv.SetMode(webhooktest.Up)
	waitStat(t, s, "an empty spool", func(st Stats) bool { return st.Pending == 0 })
	kept := g.ids[st.Dropped:]
	rcv.WaitDistinct(len(kept))
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), kept)
}

// TestDeliverNeverWaitsForTheNetwork: with a receiver that never answers,
// Deliver still returns for every batch.
func TestDeliverNeverWaitsForTheNetwork(t *testing.T) {
	rcv := newReceiver(t)
	rcv.SetMode(webhooktest.Hang)
	o := testOptions(rcv.URL(), t.TempDir())
	o.CloseTimeout = 100 * time.Millisecond
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t}
	g.emit(s, 1, 1)
	deadline := time.Now().Add(waitFor)
	for rcv.Posts() == 0 { // the sender is now stuck in a POST
		if time.Now().After(deadline) {
			t.Fatal("the sender never posted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var returned atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			g.emit(s, 10, 10)
			returned.Add(1)
		}
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatalf("Deliver blocked behind a hanging receiver (%d of 50 batches returned)", returned.Load())
	}
	if st := s.Stats(); st.Pending != 501 || st.Delivered != 0 {
		t.Fatalf("stats = %+v, want 501 pending", st)
	}
	// Close gives up on the hanging POST at its deadline and keeps the events.
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close blocked behind a hanging receiver")
	}
	rcv.Unhang()
	rcv.SetMode(webhooktest.Up)
	s2 := newSink(t, o)
	rcv.WaitDistinct(501)
	waitStat(t, s2, "an empty spool", func(st Stats) bool { return st.Pending == 0 })
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), g.ids)
}

// TestRejectedBatchIsSkipped: a 400 is final; the batch is counted and the
// events behind it still flow.
func TestRejectedBatchIsSkipped(t *testing.T) {
	rcv := newReceiver(t)
	rcv.SetMode(webhooktest.Reject)
	o := testOptions(rcv.URL(), t.TempDir())
	s := newSink(t, o)
	g := &gateway{t: t}
	g.emit(s, 16, 16)
	waitStat(t, s, "a rejected batch", func(st Stats) bool { return st.Rejected == 16 && st.Pending == 0 })
	rcv.SetMode(webhooktest.Up)
	g.emit(s, 5, 5)
	rcv.WaitDistinct(5)
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), g.ids[16:])
	if st := s.Stats(); st.Retried != 0 {
		t.Errorf("a rejected batch was retried: %+v", st)
	}
}

// TestThroughPipeline: the sink behind threat.Pipeline, the way gateways
// use it.
func TestThroughPipeline(t *testing.T) {
	rcv := newReceiver(t)
	s, err := New(testOptions(rcv.URL(), t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{s}})
	var ids []string
	for range 2000 {
		e := threattest.Event(threat.ReasonNoClientCert)
		ids = append(ids, e.ID)
		p.Emit(e)
	}
	rcv.WaitDistinct(len(ids))
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), ids)
	if ps := p.Stats(); ps[0].Delivered != 2000 || ps[0].Dropped != 0 {
		t.Errorf("pipeline stats = %+v", ps)
	}
}

func TestSpoolFilesArePrivate(t *testing.T) {
	rcv := newReceiver(t)
	dir := filepath.Join(t.TempDir(), "spool")
	s := newSink(t, testOptions(rcv.URL(), dir))
	g := &gateway{t: t}
	g.emit(s, 3, 3)
	rcv.WaitDistinct(3)
	waitStat(t, s, "an empty spool", func(st Stats) bool { return st.Pending == 0 })
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool dir: %v, %v; want 0700", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) < 2 {
		t.Fatalf("spool holds %d files, want a segment and the cursor", len(entries))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
}

func TestNewErrors(t *testing.T) {
	for name, o := range map[string]Options{
		"no URL":        {SpoolDir: t.TempDir()},
		"bad scheme":    {URL: "ftp://h/x", SpoolDir: t.TempDir()},
		"no spool dir":  {URL: "http://127.0.0.1:1/x"},
		"spool is file": {URL: "http://127.0.0.1:1/x", SpoolDir: "/dev/null"},
	} {
		if s, err := New(o); err == nil {
			_ = s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}
