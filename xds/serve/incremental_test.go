package serve_test

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// recorder keeps the responses a client receives after start.
type recorder struct {
	mu   sync.Mutex
	got  []xdstest.Received
	open bool
}

func (r *recorder) observe(x xdstest.Received) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open {
		r.got = append(r.got, x)
	}
}

func (r *recorder) start() { r.mu.Lock(); r.open, r.got = true, nil; r.mu.Unlock() }

// received lists "type name" of every resource received since start.
func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, x := range r.got {
		for _, n := range x.Names {
			out = append(out, x.TypeURL[strings.LastIndex(x.TypeURL, ".")+1:]+" "+n)
		}
	}
	sort.Strings(out)
	return out
}

// TestChangesSendOnlyWhatChanged: with 30 fusion sets, a changed route
// reaches a delta client as that one route configuration, and a state of
// the world client as the route configurations only (that protocol resends
// a whole type); a new CRL as the one validation secret (delta) or the
// secrets (state of the world). Nothing else is sent.
func TestChangesSendOnlyWhatChanged(t *testing.T) {
	h := start(t, "")
	f := xdstest.NewFixture(t, 30)
	tr := translate.NewTranslator()
	publish := func(tag string) {
		t.Helper()
		groups, err := tr.Build(f.Input)
		if err != nil {
			t.Fatal(err)
		}
		h.publish(t, tag, groups)
	}
	publish("first")
	type client struct {
		name string
		c    interface {
			xdsClient
			Observe(func(xdstest.Received))
		}
		rec *recorder
	}
	sotw, err := xdstest.StartSotW(context.Background(), dial(t, h.addr), node("envoy-sotw", "edge"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sotw.Close)
	delta, err := xdstest.StartDelta(context.Background(), dial(t, h.addr), node("envoy-delta", "edge"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(delta.Close)
	clients := []client{{"sotw", sotw, &recorder{}}, {"delta", delta, &recorder{}}}
	for _, c := range clients {
		c.c.Observe(c.rec.observe)
		if _, err := c.c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	routes := make([]string, 0, 30)
	secrets := []string{"Secret mcc-server-cert-edge"}
	for i := range 30 {
		id := "app-" + strconv.Itoa(i)
		routes = append(routes, "RouteConfiguration "+translate.RouteConfigName("edge", id))
		secrets = append(secrets, "Secret "+translate.ValidationSecretName(id))
	}
	sort.Strings(routes)
	sort.Strings(secrets)
	steps := []struct {
		name        string
		change      func()
		delta, sotw []string
	}{
		{"route", func() { f.Input.Gateway.Listeners[0].Routes[12].PathPrefix = "/v2" },
			[]string{"RouteConfiguration mcc-routes-edge/app-12"}, routes},
		{"crl", func() { f.Input.Sets["app-7"].CRLPEM = f.CAs["app-7"].CRL(t) },
			[]string{"Secret mcc-validation-app-7"}, secrets},
	}
	for _, s := range steps {
		for _, c := range clients {
			c.rec.start()
		}
		s.change()
		publish(s.name)
		for _, c := range clients {
			if _, err := c.c.Wait(waitCtx(t), serving(t, h, "edge")); err != nil {
				t.Fatalf("%s %s: %v", s.name, c.name, err)
			}
		}
		// Anything else the server would send comes with the change.
		time.Sleep(200 * time.Millisecond)
		for _, c := range clients {
			want := map[string][]string{"delta": s.delta, "sotw": s.sotw}[c.name]
			if got := c.rec.received(); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: %s client received %d resources %v, want %v", s.name, c.name, len(got), got, want)
			}
		}
	}
}
