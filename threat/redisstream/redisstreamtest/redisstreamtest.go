// Package redisstreamtest reads what the redis_stream sink wrote, for the
// end-to-end tests of both gateways.
package redisstreamtest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstream"
)

// WaitFor bounds the wait for entries: long enough for a loaded machine.
const WaitFor = 30 * time.Second

// IDs waits until stream at addr (with password, "" for none) holds at
// least n entries, checks every entry (an "id" field and an "event" field
// whose JSON matches the event schema and carries that id) and returns the
// ids in stream order.
func IDs(t testing.TB, addr, password, stream string, n int) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer c.Close()
	ctx := context.Background()
	var msgs []redis.XMessage
	deadline := time.Now().Add(WaitFor)
	for {
		var err error
		msgs, err = c.XRange(ctx, stream, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", stream, err)
		}
		if len(msgs) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s holds %d entries after %v, want %d", stream, len(msgs), WaitFor, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if len(m.Values) != 2 {
			t.Fatalf("entry %d has fields %v, want %s and %s", i, m.Values, redisstream.FieldID, redisstream.FieldEvent)
		}
		id, _ := m.Values[redisstream.FieldID].(string)
		raw, _ := m.Values[redisstream.FieldEvent].(string)
		if err := schematest.ValidateEventJSON([]byte(raw)); err != nil {
			t.Fatalf("entry %d does not match the event schema: %v\n%s", i, err, raw)
		}
		var e threat.Event
		if err := e.UnmarshalJSON([]byte(raw)); err != nil || e.ID == "" || e.ID != id {
			t.Fatalf("entry %d: event id %q, entry id %q (%v)", i, e.ID, id, err)
		}
		ids[i] = id
	}
	return ids
}
