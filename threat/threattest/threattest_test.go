package threattest_test

import (
	"context"
	"testing"
	"time"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

func TestRecorder(t *testing.T) {
	r := threattest.NewRecorder("")
	if r.Name() != "recorder" {
		t.Errorf("name %q", r.Name())
	}
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{r}})
	for _, reason := range threat.AllReasons {
		p.Emit(threattest.Event(reason))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := r.WaitFor(ctx, len(threat.AllReasons))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e.ReasonCode != threat.AllReasons[i] {
			t.Errorf("event %d: %s, want %s", i, e.ReasonCode, threat.AllReasons[i])
		}
	}
	if err := r.Err(); err != nil {
		t.Errorf("sample events do not validate: %v", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !r.Closed() || r.Len() != len(threat.AllReasons) {
		t.Errorf("closed %v, len %d", r.Closed(), r.Len())
	}

	// An invalid event is recorded and reported.
	bad := threattest.Event(threat.ReasonCertExpired)
	bad.Gateway = ""
	if err := r.Deliver(ctx, []*threat.Event{bad}); err != nil {
		t.Fatal(err)
	}
	if r.Err() == nil {
		t.Error("an event without a gateway passed the recorder's check")
	}

	// WaitFor gives up when its context ends.
	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if _, err := r.WaitFor(short, 1000); err == nil {
		t.Error("WaitFor returned without error for events that never came")
	}
}
