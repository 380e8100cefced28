package storeurl

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	for _, s := range []string{"", "memory", " memory "} {
		st, err := Open(ctx, s, zap.NewNop())
		if err != nil {
			t.Fatalf("Open(%q): %v", s, err)
		}
		if _, ok := st.(*threat.MemoryStore); !ok {
			t.Errorf("Open(%q) = %T, want *threat.MemoryStore", s, st)
		}
	}

	srv := redistest.New(t)
	st, err := Open(ctx, srv.URL(), zap.NewNop())
	if err != nil {
		t.Fatalf("Open(%s): %v", srv.URL(), err)
	}
	defer st.Close()
	if _, ok := st.(*redisstore.Store); !ok {
		t.Fatalf("Open(%s) = %T, want *redisstore.Store", srv.URL(), st)
	}
	p := threat.Policy{Threshold: 1, Window: time.Minute, BanFor: time.Minute}
	if res, err := st.Add(ctx, "s", threat.Subject{IP: "192.0.2.1"}, 1, p); err != nil || res.BannedUntil.IsZero() {
		t.Fatalf("Add through the opened store = %+v, %v", res, err)
	}

	for _, bad := range []string{"redis", "memcached://h:1", "file:///tmp/x", "mem://user:hunter2@h"} {
		_, err := Open(ctx, bad, zap.NewNop())
		if err == nil {
			t.Errorf("Open(%q) succeeded", bad)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error leaks the password: %v", bad, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:pw@h:6379/0": "redis://:xxxxx@h:6379/0",
		"rediss://u:pw@h:6380": "rediss://u:xxxxx@h:6380",
		"redis://h:6379/1":     "redis://h:6379/1",
		"redis://u@h:6379":     "redis://u@h:6379",
		"memory":               "memory",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// Parse is the one check of a store setting: one error text, never the
// password, and for a setting with placeholders the placeholder text only.
func TestParse(t *testing.T) {
	for in, want := range map[string]Kind{"": KindMemory, " memory ": KindMemory, "redis://h:6379/0": KindRedis, "rediss://:pw@h:6380/1": KindRedis} {
		if _, k, err := Parse(in); err != nil || k != want {
			t.Errorf("Parse(%q) = %v, %v; want kind %v", in, k, err, want)
		}
	}
	for _, bad := range []string{"redis", "memcached://h:1", "postgres://u:hunter2@db/x", "Memory"} {
		_, _, err := Parse(bad)
		if err == nil || !strings.Contains(err.Error(), `is neither "memory" nor a redis:// or rediss:// URL`) {
			t.Errorf("Parse(%q) = %v", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) shows the password: %v", bad, err)
		}
	}
	// The expanded value may be the password alone: only the written text.
	_, _, err := ParseExpanded("hunter2", "{env.REDIS_URL}")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "{env.REDIS_URL}") {
		t.Errorf("ParseExpanded = %v, want the placeholder named and no secret", err)
	}
}
