package serve_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// BenchmarkBuild1000FusionSets measures what a first configuration costs
// the control plane for 1,000 fusion sets on one listener: translation to
// Envoy resources, snapshot assembly, the reference checks and deep
// validation of every resource (Any contents included), and publication.
func BenchmarkBuild1000FusionSets(b *testing.B) {
	f := xdstest.NewFixture(b, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var resources int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cp := serve.New(ctx, serve.Options{}) // a fresh cache: every op publishes
		b.StartTimer()
		groups, err := translate.Build(f.Input)
		if err != nil {
			b.Fatal(err)
		}
		if err := cp.Publish(ctx, serve.Update{ConfigVersion: fmt.Sprint(i), Groups: groups}); err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			for _, rs := range groups["edge"] {
				resources += len(rs)
			}
		}
	}
	b.ReportMetric(float64(resources), "resources")
}

// BenchmarkRouteChange1000FusionSets measures what a one-route change of
// 1,000 fusion sets costs the control plane as mcc xds runs it: one
// Translator and one control plane across changes, so that only the changed
// route configuration is translated, hashed and validated again.
func BenchmarkRouteChange1000FusionSets(b *testing.B) {
	f := xdstest.NewFixture(b, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := serve.New(ctx, serve.Options{})
	tr := translate.NewTranslator()
	publish := func(tag string) {
		groups, err := tr.Build(f.Input)
		if err != nil {
			b.Fatal(err)
		}
		if err := cp.Publish(ctx, serve.Update{ConfigVersion: tag, Groups: groups}); err != nil {
			b.Fatal(err)
		}
	}
	publish("first")
	route := f.Input.Gateway.Listeners[0].Routes[500]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		route.PathPrefix = fmt.Sprintf("/v%d", i)
		publish(fmt.Sprint(i))
	}
}

// BenchmarkPropagation100Clients measures the time from publishing a
// changed configuration to all of 100 connected xDS clients (each on its
// own gRPC connection, subscribed like Envoy) having accepted it. Budget:
// under 1 s per op. Two kinds of change: "route" adds a host to a fusion
// set (the listener's filter chain and the route configuration change);
// "crl" replaces one fusion set's CRL (one SDS secret changes). The clients
// run in this process and parse every response, so on a small machine they
// cost more CPU than the control plane. It also reports the heap held per
// connected client (both sides, same process).
func BenchmarkPropagation100Clients(b *testing.B) {
	for _, sets := range []int{20, 1000} {
		for _, change := range []string{"route", "crl"} {
			for _, delta := range []bool{false, true} {
				name := fmt.Sprintf("%s/sets=%d/change=%s", map[bool]string{false: "sotw", true: "delta"}[delta], sets, change)
				b.Run(name, func(b *testing.B) { benchPropagation(b, 100, sets, change, delta) })
			}
		}
	}
}

func benchPropagation(b *testing.B, clients, sets int, change string, delta bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp := serve.New(ctx, serve.Options{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(cp.ServerOptions()...)
	cp.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	f := xdstest.NewFixture(b, sets)
	tr := translate.NewTranslator() // as mcc xds: only what changed is translated again
	publish := func(tag string) string {
		groups, err := tr.Build(f.Input)
		if err != nil {
			b.Fatal(err)
		}
		if err := cp.Publish(ctx, serve.Update{ConfigVersion: tag, Groups: groups}); err != nil {
			b.Fatal(err)
		}
		snap, err := cp.Snapshot("edge")
		if err != nil {
			b.Fatal(err)
		}
		return snap.GetVersion(resourcev3.ListenerType)
	}
	publish("start")

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	type waiter interface {
		Wait(context.Context, func(xdstest.View) bool) (xdstest.View, error)
	}
	cs := make([]waiter, clients)
	for i := range cs {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		n := node(fmt.Sprintf("envoy-%d", i), "edge")
		if delta {
			c, err := xdstest.StartDelta(ctx, cc, n, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cs[i] = c
		} else {
			c, err := xdstest.StartSotW(ctx, cc, n, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			cs[i] = c
		}
	}
	// hasHost: a client accepted set's route configuration with host.
	hasHost := func(set, host string) func(xdstest.View) bool {
		return func(v xdstest.View) bool {
			a := v.Resources[resourcev3.RouteType][translate.RouteConfigName("edge", set)]
			return a != nil && bytes.Contains(a.GetValue(), []byte(host))
		}
	}
	waitAll := func(cond func(xdstest.View) bool) {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		var wg sync.WaitGroup
		errs := make(chan error, len(cs))
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Wait(wctx, cond); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	waitAll(hasHost("app-0", "app-0.example.com"))

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	// hasCRL: a client accepted app-1's validation secret with crl.
	hasCRL := func(crl []byte) func(xdstest.View) bool {
		return func(v xdstest.View) bool {
			a := v.Resources[resourcev3.SecretType]["mcc-validation-app-1"]
			return a != nil && bytes.Contains(a.GetValue(), crl)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		switch change {
		case "route":
			host := fmt.Sprintf("change-%d.example.com", i)
			f.AddRoute(host, "app-1")
			publish(host)
			waitAll(hasHost("app-1", host))
		case "crl":
			b.StopTimer()
			crl := f.CAs["app-1"].CRL(b)
			f.Input.Sets["app-1"].CRLPEM = crl
			b.StartTimer()
			publish(fmt.Sprint("crl-", i))
			waitAll(hasCRL(crl))
		}
	}
	b.StopTimer()
	// Clients and control plane share this process: the figure is the heap
	// both sides hold per connected client, an upper bound for the server.
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(clients)/1024, "KiB-heap/client")
}
