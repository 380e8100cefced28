package redisstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

func TestXAddInOrderWithMaxLen(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	// Small macro nodes so that MAXLEN ~ trims close to the cap.
	const node = 8
	if reply, err := srv.Do("CONFIG", "SET", "stream-node-max-entries", "8"); err != nil || reply != "+OK" {
		t.Fatalf("CONFIG SET = %q, %v", reply, err)
	}
	const maxLen, total = 50, 300
	sink, err := New(ctx, srv.URL(), "mcc:events", maxLen, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if sink.Name() != "redis_stream:mcc:events" {
		t.Errorf("Name = %q", sink.Name())
	}

	var sent []*threat.Event
	for len(sent) < total {
		batch := make([]*threat.Event, 0, 32)
		for range min(32, total-len(sent)) {
			e := threattest.Event(threat.ReasonCertRevoked)
			e.ID = threat.NewEventID()
			batch = append(batch, e)
		}
		if err := sink.Deliver(ctx, batch); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, batch...)
	}

	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	entries, err := rc.XRange(ctx, "mcc:events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < maxLen || len(entries) >= maxLen+node {
		t.Fatalf("stream holds %d entries, want MAXLEN ~ %d: at least %d and under %d", len(entries), maxLen, maxLen, maxLen+node)
	}
	// The stream keeps the newest events, in the order they were sent.
	tail := sent[len(sent)-len(entries):]
	for i, en := range entries {
		id, _ := en.Values[FieldID].(string)
		raw, _ := en.Values[FieldEvent].(string)
		if id != tail[i].ID {
			t.Fatalf("entry %d has id %q, want %q (order or content lost)", i, id, tail[i].ID)
		}
		if err := schematest.ValidateEventJSON([]byte(raw)); err != nil {
			t.Fatalf("entry %d: event does not match the schema: %v", i, err)
		}
		var got threat.Event
		if err := got.UnmarshalJSON([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		if got.ID != id || got.ReasonCode != threat.ReasonCertRevoked {
			t.Fatalf("entry %d decodes to id %q reason %q", i, got.ID, got.ReasonCode)
		}
	}
}

func TestThroughPipeline(t *testing.T) {
	srv := redistest.New(t)
	ctx := context.Background()
	sink, err := New(ctx, srv.URL(), "events", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := threat.NewPipeline(threat.PipelineOptions{Sinks: []threat.Sink{sink}})
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		e := threattest.Event(threat.ReasonNoClientCert)
		e.ID = threat.NewEventID()
		ids[i] = e.ID
		p.Emit(e)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if len(st) != 1 || st[0].Delivered != n {
		t.Fatalf("pipeline stats = %+v, want %d delivered", st, n)
	}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rc.Close()
	entries, err := rc.XRange(ctx, "events", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("stream holds %d entries, want %d (no cap)", len(entries), n)
	}
	for i, en := range entries {
		if en.Values[FieldID] != ids[i] {
			t.Fatalf("entry %d is %v, want %s", i, en.Values[FieldID], ids[i])
		}
	}
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	if _, err := New(ctx, srv.URL(), "", 10, nil); err == nil {
		t.Error("New with no stream name succeeded")
	}
	if _, err := New(ctx, "redis://:hunter2@[::1", "s", 10, nil); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New with a bad URL: %v", err)
	}
	if reply, err := srv.Do("CONFIG", "SET", "requirepass", "pw"); err != nil || reply != "+OK" {
		t.Fatalf("CONFIG SET requirepass = %q, %v", reply, err)
	}
	if _, err := New(ctx, srv.URL(), "s", 10, nil); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("New without the password: %v, want NOAUTH", err)
	}
}

// TestStartsWhileRedisDown: a gateway starts with Redis down; batches fail
// (the pipeline counts them) until Redis is back, then flow again.
func TestStartsWhileRedisDown(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t)
	srv.Stop()
	sink, err := New(ctx, srv.URL(), "s", 10, nil)
	if err != nil {
		t.Fatalf("New with Redis down: %v", err)
	}
	defer sink.Close()
	batch := []*threat.Event{threattest.Event(threat.ReasonCertExpired)}
	if err := sink.Deliver(ctx, batch); err == nil {
		t.Fatal("Deliver with Redis down succeeded")
	}
	srv.Start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := sink.Deliver(ctx, batch)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Deliver still failing after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
