package threat_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

// BenchmarkFileSinkThroughput pushes b.N events through a Pipeline into a
// rotating file sink and reports the sustained rate, from the first Emit
// until Close has written and synced the last event. The queue holds every
// event so that the figure is the sink's rate, not the drop rate.
func BenchmarkFileSinkThroughput(b *testing.B) {
	path := filepath.Join(b.TempDir(), "events.jsonl")
	sink, err := threat.NewFileSink(path, 64<<20, 2)
	if err != nil {
		b.Fatal(err)
	}
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{sink}, QueueSize: b.N})
	e := threattest.Event(threat.ReasonCertUntrusted)
	line, _ := e.MarshalJSON()
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		p.Emit(e)
	}
	if err := p.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	st := p.Stats()[0]
	if st.Delivered != uint64(b.N) || st.Dropped != 0 || st.Failed != 0 {
		b.Fatalf("stats %+v, want all %d delivered", st, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchmarkEventMarshalJSON is the per-event encoding cost inside sinks.
func BenchmarkEventMarshalJSON(b *testing.B) {
	e := threattest.Event(threat.ReasonCertUntrusted)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

// nopSink accepts and forgets.
type nopSink struct{}

func (nopSink) Name() string                                   { return "nop" }
func (nopSink) Deliver(context.Context, []*threat.Event) error { return nil }
func (nopSink) Close() error                                   { return nil }

// BenchmarkEmit is what a request pays to hand an event to two sinks (one of
// them stalled, so its queue is full and every Emit takes the drop path).
func BenchmarkEmit(b *testing.B) {
	stalled := &stalledSink{release: make(chan struct{}), entered: make(chan struct{})}
	defer close(stalled.release)
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{nopSink{}, stalled}})
	e := threattest.Event(threat.ReasonCertUntrusted)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Emit(e)
		}
	})
	b.StopTimer()
	t := p.Totals()
	b.ReportMetric(float64(t.Dropped)/float64(2*t.Emitted), "dropped/event")
}

func BenchmarkMemoryStoreBanned(b *testing.B) {
	ctx := context.Background()
	sub := threat.Subject{IP: "192.0.2.1", DeviceID: "device-1", CertSHA: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
	p := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: time.Hour}
	for _, tc := range []struct {
		name  string
		setup func(s *threat.MemoryStore)
	}{
		{"no-bans", func(s *threat.MemoryStore) {
			for i := range 100_000 {
				_, _ = s.Add(ctx, "set", threat.Subject{IP: fmt.Sprint(i)}, 1, p)
			}
		}},
		{"other-banned", func(s *threat.MemoryStore) {
			for i := range 100_000 {
				_, _ = s.Add(ctx, "set", threat.Subject{IP: fmt.Sprint(i)}, 1+i%10, p)
			}
		}},
		{"subject-banned", func(s *threat.MemoryStore) {
			_, _ = s.Add(ctx, "set", sub, 10, p)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := threat.NewMemoryStore(nil)
			tc.setup(s)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Banned(ctx, "set", sub); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkMemoryStoreAdd(b *testing.B) {
	ctx := context.Background()
	s := threat.NewMemoryStore(nil)
	p := threat.Policy{Threshold: 1 << 30, Window: time.Minute, BanFor: time.Hour}
	subs := make([]threat.Subject, 4096)
	for i := range subs {
		subs[i] = threat.Subject{IP: fmt.Sprintf("10.0.%d.%d", i/256, i%256), CertSHA: fmt.Sprint(i)}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Add(ctx, "set", subs[i%len(subs)], 1, p); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
