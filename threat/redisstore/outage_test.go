package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// TestOutageUnderLoad takes Redis away while many goroutines score and
// check bans, then brings it back: stopped (connections refused) and
// restarted on the same port, or frozen (nothing answers, connections hang)
// and thawed. Every call must return (none hangs), the breaker must trip and
// refuse calls without touching the network, and the store must recover by
// itself. It counts outcomes, not time: on a shared machine durations prove
// nothing.
func TestOutageUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name       string
		down, back func(*redistest.Server)
	}{
		{"stopped", (*redistest.Server).Stop, (*redistest.Server).Start},
		{"frozen", (*redistest.Server).Pause, (*redistest.Server).Resume},
	} {
		t.Run(tc.name, func(t *testing.T) { testOutage(t, tc.down, tc.back) })
	}
}

func testOutage(t *testing.T, down, back func(*redistest.Server)) {
	srv := redistest.New(t)
	core, logs := observer.New(zapcore.InfoLevel)
	st := newStore(t, srv.URL(), Options{
		// The defaults (50 ms) would do on a quiet machine; a loaded CI
		// runner can stall a healthy read that long.
		DialTimeout: 250 * time.Millisecond, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond,
		Cooldown: 50 * time.Millisecond,
		Logger:   zap.New(core),
	})

	var (
		ok, failed, refused atomic.Int64
		stop                atomic.Bool
		wg                  sync.WaitGroup
	)
	p := threat.Policy{Threshold: 1 << 30, Window: time.Minute, BanFor: time.Minute}
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := threat.Subject{IP: "10.0.0.1", DeviceID: "dev"}
			for i := 0; !stop.Load(); i++ {
				// No deadline from the caller: the store bounds every call itself.
				var err error
				if (w+i)%2 == 0 {
					_, err = st.Add(context.Background(), "load", sub, 1, p)
				} else {
					_, err = st.Banned(context.Background(), "load", sub)
				}
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrUnavailable):
					refused.Add(1)
					// A real gateway would be serving from its
					// memory store here; yield like it would.
					time.Sleep(time.Millisecond)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	defer func() {
		stop.Store(true)
		select {
		case <-finished:
		case <-time.After(time.Minute):
			t.Fatal("store calls still running a minute after the load stopped: a call hangs")
		}
	}()

	waitCount(t, "successful calls before the outage", &ok, 200)

	down(srv)
	waitCount(t, "refused calls while Redis is down", &refused, 1000)
	whileDown := st.Stats()
	if whileDown.Up || whileDown.Trips < 1 {
		t.Fatalf("Stats while down = %+v, want Up false and a trip", whileDown)
	}
	// The breaker holds the failures to a handful per trip: the calls in
	// flight when Redis went away, and a few more that left before the
	// breaker had counted enough failures. Everything else was refused
	// without waiting.
	if f := failed.Load(); f > int64(whileDown.Trips)*(2*workers+int64(DefaultFailureThreshold)) {
		t.Errorf("%d calls failed against the network in %d trips; the breaker should refuse almost all", f, whileDown.Trips)
	}

	back(srv)
	waitUp(t, st)
	okAfter := ok.Load()
	waitCount(t, "successful calls after Redis came back", &ok, okAfter+200)

	stop.Store(true)
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("store calls still running a minute after the load stopped: a call hangs")
	}
	final := st.Stats()
	if !final.Up || final.Errors != uint64(failed.Load()) || final.Rejected != uint64(refused.Load()) {
		t.Errorf("Stats = %+v; counted %d failed, %d refused", final, failed.Load(), refused.Load())
	}
	// Said once: one Warn per trip and one Info per recovery, not one line
	// per failed call.
	warns := logs.FilterLevelExact(zapcore.WarnLevel).Len()
	infos := logs.FilterMessage("redis store up again").Len()
	if warns != int(final.Trips) || infos != int(final.Trips) {
		t.Errorf("logged %d warnings and %d recoveries for %d trips", warns, infos, final.Trips)
	}
	t.Logf("ok %d, failed %d, refused %d, stats %+v", ok.Load(), failed.Load(), refused.Load(), final)
}

// waitCount polls c until it reaches n.
func waitCount(t *testing.T, what string, c *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for c.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d after %v, want %d", what, c.Load(), waitFor, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
