package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// Load of TestRedisOutageUnderLoad.
const (
	// workersPerGateway clients send requests to each gateway at once.
	workersPerGateway = 2
	// invalidPerPhase bounds the blocked requests a worker sends in each
	// phase: each needs a new client and certificate, made before the
	// load starts. After that the worker sends valid requests only until
	// the next phase.
	invalidPerPhase = 80
	// minPerPhase is how many allowed and how many blocked requests each
	// gateway must have answered in each phase for it to count.
	minPerPhase = 10
	// pause between a worker's requests: a load, not a stampede on a
	// machine shared with other tests.
	pause = 2 * time.Millisecond
)

// invalidReasons are the failures the load sends, in turn.
var invalidReasons = []threat.Reason{
	threat.ReasonNoClientCert, threat.ReasonCertUntrusted, threat.ReasonCertExpired,
	threat.ReasonIdentityMismatch, threat.ReasonWrongKeyUsage,
}

// phases of the outage test; a request counts in the phase it started in.
const (
	phaseBefore = iota
	phaseOutage
	phaseAfter
	phases
)

var phaseNames = [phases]string{"before the outage", "during the outage", "after the outage"}

// When Redis goes away in the middle of a load, stopped (connections
// refused) or paused (connections accepted, nothing answers, as behind a
// network that drops packets), neither gateway fails a request: valid
// certificates are still allowed, invalid ones still blocked with their
// reason codes, and a client that floods one gateway is still banned there
// (scored locally). When Redis is back, on the same port, both gateways use
// it again by themselves: bans cross between them again.
func TestRedisOutageUnderLoad(t *testing.T) {
	for _, outage := range []struct {
		name     string
		down, up func(*redistest.Server)
	}{
		{"stopped", (*redistest.Server).Stop, (*redistest.Server).Start},
		{"paused", (*redistest.Server).Pause, (*redistest.Server).Resume},
	} {
		t.Run(outage.name, func(t *testing.T) {
			// The ban outlasts the test: nothing here waits for one to end.
			f := newFleet(t, 10*time.Minute)
			l := f.startLoad(t)
			defer l.stop(t)

			l.waitPhase(t, phaseBefore)
			outage.down(f.redis)
			l.phase.Store(phaseOutage)

			// Both gateways notice: the authz store's breaker opens,
			// Caddy counts store errors. Every request asks the store
			// about bans, so the load alone makes them notice.
			waitFor(t, "the authz store to see Redis down", func() bool { return !f.authz.store.Stats().Up })
			waitFor(t, "Caddy to count store errors", func() bool { return f.caddy.storeErrors(t) > 0 })

			// A flooding client is banned by the gateway it floods,
			// from that gateway's own scores.
			for _, g := range []gateway{f.caddy, f.envoy} {
				t.Run("local ban at "+g.name(), func(t *testing.T) {
					f.banAcross(t, []failure{f.untrustedAt(g), f.untrustedAt(g), f.untrustedAt(g)}, []gateway{g})
				})
			}
			l.waitPhase(t, phaseOutage)
			if f.authz.store.Stats().Up {
				t.Fatal("the authz store saw Redis up while it was down")
			}

			outage.up(f.redis)
			l.phase.Store(phaseAfter)
			waitFor(t, "the authz store to find Redis again", func() bool { return f.authz.store.Stats().Up })
			// Caddy's store is inside Caddy: that it found Redis again
			// shows in bans crossing again, in both directions (Caddy's
			// Add, then Caddy's Banned).
			f.waitBanCrosses(t, f.caddy, f.envoy)
			f.waitBanCrosses(t, f.envoy, f.caddy)
			l.waitPhase(t, phaseAfter)
		})
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitBanCrosses has new clients cross the threshold at from until one of
// them is banned at to, failing the test after timeout. Each of their
// failures must be blocked with its reason all along.
func (f *fleet) waitBanCrosses(t *testing.T, from, to gateway) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := f.newClient()
		for range threshold / eventScore {
			expectBlocked(t, from, c, f.invalid(t, threat.ReasonCertUntrusted))
		}
		v := mustRequest(t, to, c, f.valid)
		if v.blockedFor(threat.ReasonFailSafeActive) {
			return
		}
		if !v.Allowed {
			t.Fatalf("%s: client %s with a valid certificate: %v, want allow or FAIL_SAFE_ACTIVE", to.name(), c, v)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a ban at %s still does not reach %s %s after Redis came back", from.name(), to.name(), timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// load is workers sending requests to both gateways until stopped. Every
// request must get exactly its expected answer; anything else, an error
// included, is recorded as a failure.
type load struct {
	phase atomic.Int32
	done  chan struct{}
	wg    sync.WaitGroup

	mu sync.Mutex
	// answered counts requests that got their expected answer, by
	// gateway, phase, and allowed (0) or blocked (1).
	answered map[string]*[phases][2]int
	failures int
	examples []string
}

// job is one blocked request: a new client and its certificate.
type job struct {
	c  client
	tc fusiontest.Case
}

// startLoad starts workersPerGateway workers per gateway. Each sends, in
// turn, a valid certificate from its own client and an invalid one from a
// new client (a client seen once is never banned: the load must see the
// reason codes, not fail-safe blocks).
func (f *fleet) startLoad(t *testing.T) *load {
	t.Helper()
	type worker struct {
		g    gateway
		own  client
		jobs [phases][]job
	}
	l := &load{done: make(chan struct{}), answered: map[string]*[phases][2]int{}}
	var workers []worker
	for _, g := range []gateway{f.caddy, f.envoy} {
		l.answered[g.name()] = new([phases][2]int)
		for range workersPerGateway {
			w := worker{g: g, own: f.newClient()}
			for p := range w.jobs {
				w.jobs[p] = make([]job, invalidPerPhase)
				for i := range w.jobs[p] {
					w.jobs[p][i] = job{c: f.newClient(), tc: f.invalid(t, invalidReasons[i%len(invalidReasons)])}
				}
			}
			workers = append(workers, w)
		}
	}
	for _, w := range workers {
		l.wg.Add(1)
		go l.work(w.g, w.own, f.valid, w.jobs)
	}
	return l
}

func (l *load) work(g gateway, own client, valid fusiontest.Case, jobs [phases][]job) {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		default:
		}
		l.one(g, own, valid)
		if p := l.phase.Load(); len(jobs[p]) > 0 {
			l.one(g, jobs[p][0].c, jobs[p][0].tc)
			jobs[p] = jobs[p][1:]
		}
		time.Sleep(pause)
	}
}

// one sends one request and records how it went.
func (l *load) one(g gateway, c client, tc fusiontest.Case) {
	phase := int(l.phase.Load())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	v, err := g.request(ctx, c, tc)
	cancel()
	var problem string
	switch {
	case err != nil:
		problem = err.Error()
	case tc.Want == threat.ReasonNone && !v.Allowed:
		problem = fmt.Sprintf("valid certificate: %v, want allow", v)
	case tc.Want != threat.ReasonNone && !v.blockedFor(tc.Want):
		problem = fmt.Sprintf("%s certificate: %v, want block 403 %s", tc.Name, v, tc.Want)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if problem != "" {
		l.failures++
		if len(l.examples) < 10 {
			l.examples = append(l.examples, fmt.Sprintf("%s, %s, client %s: %s", g.name(), phaseNames[phase], c, problem))
		}
		return
	}
	blocked := 0
	if !v.Allowed {
		blocked = 1
	}
	l.answered[g.name()][phase][blocked]++
}

// waitPhase waits until each gateway has answered minPerPhase allowed and
// minPerPhase blocked requests that started in phase. It fails the test as
// soon as a request went wrong.
func (l *load) waitPhase(t *testing.T, phase int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the load to make progress %s", phaseNames[phase]), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.failures > 0 {
			t.Fatalf("%s, %d requests of the load went wrong; the first:\n%s", phaseNames[phase], l.failures, strings.Join(l.examples, "\n"))
		}
		for _, a := range l.answered {
			if a[phase][0] < minPerPhase || a[phase][1] < minPerPhase {
				return false
			}
		}
		return true
	})
}

// stop stops the workers and fails the test if any request went wrong.
func (l *load) stop(t *testing.T) {
	select {
	case <-l.done:
		return
	default:
	}
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	var counts []string
	for _, g := range []string{threat.GatewayCaddy, threat.GatewayEnvoy} {
		for p := range phases {
			counts = append(counts, fmt.Sprintf("%s %s: %d allowed, %d blocked", g, phaseNames[p], l.answered[g][p][0], l.answered[g][p][1]))
		}
	}
	t.Logf("load: %s", strings.Join(counts, "; "))
	if l.failures > 0 {
		t.Errorf("%d requests of the load went wrong; the first:\n%s", l.failures, strings.Join(l.examples, "\n"))
	}
}
