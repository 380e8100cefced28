package webhook

import (
	"context"
	"testing"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
	"github.com/mccgate/mcc/threat/webhook/webhooktest"
)

// BenchmarkDeliver measures what the pipeline pays per event: encoding and
// appending to the spool, one fsync per 256-event batch. The receiver is
// up, so the spool also drains while it runs.
func BenchmarkDeliver(b *testing.B) {
	rcv := newReceiver(b)
	rcv.SetMode(webhooktest.Discard)
	o := testOptions(rcv.URL(), b.TempDir())
	o.BatchSize = 256
	s, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([]*threat.Event, 256)
	for i := range batch {
		batch[i] = threattest.Event(threat.ReasonCertUntrusted)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if err := s.Deliver(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(s.Stats().Dropped), "dropped")
}
