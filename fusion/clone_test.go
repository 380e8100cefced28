package fusion_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/threattest"
)

// TestCloneDetectionConfig: clone_detection loads strictly, with located
// errors, and is off unless a maximum is set.
func TestCloneDetectionConfig(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	block := func(lines string) string { return validSet + "    clone_detection:\n" + lines }
	devices := "    device_headers:\n      deviceID: X-Device-Id\n"
	tests := []struct {
		name string
		yaml string
		want []wantProblem
	}{
		{"negative addresses", block("      max_addresses: -1\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.max_addresses", "must be from 0 (not counted) to 10000000, got -1"}}},
		{"huge devices", block("      max_devices: 10000001\n") + devices,
			[]wantProblem{{9, "fusion_sets[0].clone_detection.max_devices", "got 10000001"}}},
		{"devices without a device header", block("      max_devices: 20\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.max_devices", "needs device_headers.deviceID"}}},
		{"window too short", block("      window: 30s\n      max_addresses: 5\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.window", "must be from 1m0s to 7d, got 30s"}}},
		{"window too long", block("      window: 8d\n      max_addresses: 5\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.window", "got 192h0m0s"}}},
		{"zero window", block("      window: 0s\n      max_addresses: 5\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.window", "got 0s"}}},
		{"window not a duration", block("      window: hourly\n      max_addresses: 5\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.window", "invalid duration"}}},
		{"counts nothing", block("      window: 1h\n"),
			[]wantProblem{{8, "fusion_sets[0].clone_detection", "counts nothing"}}},
		{"quoted maximum", block("      max_addresses: \"50\"\n"),
			[]wantProblem{{9, "fusion_sets[0].clone_detection.max_addresses", "want an integer"}}},
		{"unknown key", block("      max_address: 50\n"),
			[]wantProblem{{8, "fusion_sets[0].clone_detection", "counts nothing"}, {9, "fusion_sets[0].clone_detection.max_address", "unknown field"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, c, tc.yaml, tc.want)
		})
	}

	cfg, err := loadString(t, c.Dir, block("      max_addresses: 50\n      max_devices: 20\n")+devices)
	if err != nil {
		t.Fatal(err)
	}
	want := threat.ClonePolicy{Window: time.Hour, MaxAddresses: 50, MaxDevices: 20}
	if got := cfg.Sets["bank-prod"].Clone; got != want {
		t.Errorf("policy %+v, want %+v (window defaults to 1h)", got, want)
	}
	cfg, err = loadString(t, c.Dir, validSet)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sets["bank-prod"].Clone.Enabled() {
		t.Error("clone detection on without clone_detection")
	}
}

// cloneEngine is an engine on the corpus set with clone detection and
// fail-safe enforcement whose threshold one RATE_ANOMALY reaches.
func cloneEngine(t *testing.T, c *fusiontest.Corpus, mode threat.Mode, store threat.Store, maxAddrs, maxDevs int) (*fusion.Engine, *threattest.Recorder) {
	t.Helper()
	file := c.WriteSetFile(t, fmt.Sprintf("clone-%s-%d-%d.yaml", mode, maxAddrs, maxDevs), func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(mode), true
		sc.CloneDetection = &fusion.CloneDetection{MaxAddresses: maxAddrs, MaxDevices: maxDevs}
		sc.FailSafe = &fusion.FailSafe{Threshold: threat.DefaultScores[threat.ReasonRateAnomaly]}
	})
	p, rec := recordingPipeline(t)
	return loadEngine(t, file, fusion.Options{Pipeline: p, Store: store}), rec
}

// TestCloneDetectionEngine replays one genuine certificate from many
// addresses in each mode: the request that reaches max_addresses is allowed
// and reported as RATE_ANOMALY with the counts, once; its address is scored
// (here to a ban) while the certificate is not, so the same certificate from
// a fresh address still passes.
func TestCloneDetectionEngine(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	valid := c.Case(t, "valid")
	ctx := context.Background()
	for _, mode := range []threat.Mode{threat.ModeDefense, threat.ModeDetection} {
		t.Run(string(mode), func(t *testing.T) {
			store := threat.NewMemoryStore(nil)
			e, rec := cloneEngine(t, c, mode, store, 20, 0)
			var reports []fusion.Decision
			for i := range 30 {
				addr := fmt.Sprintf("198.51.100.%d", i+1)
				// Every client comes back, except the reported one: one
				// RATE_ANOMALY bans it here.
				for range 2 {
					d := e.Evaluate(ctx, c.SetID, from(request(valid, addr), addr, fmt.Sprint("device-", i)))
					if d.Reason == threat.ReasonRateAnomaly {
						reports = append(reports, d)
						break
					}
					if d.Reason != threat.ReasonNone || d.Action != fusion.Allow {
						t.Fatalf("request %d from %s: %s %s", i, addr, d.Action, d.Reason)
					}
				}
			}
			if len(reports) != 1 {
				t.Fatalf("%d RATE_ANOMALY decisions, want 1", len(reports))
			}
			d := reports[0]
			if d.Action != fusion.Allow || !d.Emitted || !d.CacheHit {
				t.Errorf("report: action %s emitted %v cache hit %v, want an allowed, emitted, cached good path", d.Action, d.Emitted, d.CacheHit)
			}
			ev := d.Event
			if ev.Action != threat.ActionReported || ev.ClientIP != "198.51.100.20" || ev.Certificate == nil {
				t.Errorf("event action %s clientIP %s certificate %v", ev.Action, ev.ClientIP, ev.Certificate)
			}
			rd := ev.ReasonData
			if rd["addresses"] != 20 || rd["devices"] != 20 || rd["maxAddresses"] != 20 || rd["maxDevices"] != 0 || rd["window"] != "1h0m0s" {
				t.Errorf("reasonData %v", rd)
			}
			if s, _ := rd["sampleAddresses"].([]string); len(s) != threat.CloneSampleSize || s[0] != "198.51.100.1" {
				t.Errorf("sample %v, want the first %d addresses", rd["sampleAddresses"], threat.CloneSampleSize)
			}
			if ev.CurrentThreatEventScore != threat.DefaultScores[threat.ReasonRateAnomaly] || !ev.FailSafeEnforce {
				t.Errorf("score %d enforce %v, want the client scored to its ban", ev.CurrentThreatEventScore, ev.FailSafeEnforce)
			}
			got, err := rec.WaitFor(waitCtx(t), 1)
			if err != nil || got[0].ID != ev.ID {
				t.Fatalf("sink: %v %v", got, err)
			}

			// The reported client is banned; the certificate is not.
			if d := e.Evaluate(ctx, c.SetID, from(request(valid, "198.51.100.20"), "198.51.100.20", "device-19")); d.Reason != threat.ReasonFailSafeActive {
				t.Errorf("the reported client's next request: %s, want FAIL_SAFE_ACTIVE", d.Reason)
			}
			if d := e.Evaluate(ctx, c.SetID, from(request(valid, "203.0.113.77"), "203.0.113.77", "device-fresh")); d.Action != fusion.Allow {
				t.Errorf("the certificate from a fresh client: %s %s, want allowed", d.Action, d.Reason)
			}
			bans, _ := store.Bans(ctx, c.SetID)
			for _, b := range bans {
				if b.Kind == threat.SubjectCertificate {
					t.Errorf("the genuine certificate is banned: %+v", b)
				}
			}
			if len(bans) == 0 {
				t.Error("nobody was scored to a ban")
			}
		})
	}
}

// TestCloneDetectionDevicesAndMiss: device ids count on their own, and the
// first use of a certificate (a cache miss, verified on the spot) is
// counted too.
func TestCloneDetectionDevicesAndMiss(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	valid := c.Case(t, "valid")
	ctx := context.Background()
	e, _ := cloneEngine(t, c, threat.ModeDefense, nil, 0, 1)
	d := e.Evaluate(ctx, c.SetID, request(valid, "192.0.2.1"))
	if d.CacheHit || d.Reason != threat.ReasonRateAnomaly || d.Action != fusion.Allow {
		t.Fatalf("first use at max_devices 1: hit %v %s %s, want a reported miss", d.CacheHit, d.Action, d.Reason)
	}
	if d.Event.ReasonData["devices"] != 1 || d.Event.ReasonData["addresses"] != 1 {
		t.Errorf("reasonData %v", d.Event.ReasonData)
	}
	// Each report bans its client, so every device comes from its own
	// address; the count doubling from 1 reports at 2, 4 and 8.
	var at []any
	for i := 2; i <= 8; i++ {
		ip := fmt.Sprintf("192.0.2.%d", i)
		d := e.Evaluate(ctx, c.SetID, from(request(valid, ip), ip, fmt.Sprint("device-", i)))
		if d.Action != fusion.Allow {
			t.Fatalf("device %d: %s %s", i, d.Action, d.Reason)
		}
		if d.Reason == threat.ReasonRateAnomaly {
			at = append(at, d.Event.ReasonData["devices"])
		}
	}
	if fmt.Sprint(at) != "[2 4 8]" {
		t.Errorf("reported again at %v devices, want at 2, 4 and 8 (each doubling)", at)
	}
}

// TestCloneDetectionOffCountsNothing: without clone_detection the good path
// never touches the clone counters.
func TestCloneDetectionOffCountsNothing(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	store := threat.NewMemoryStore(nil)
	e := loadEngine(t, c.SetFile, fusion.Options{Store: store})
	for i := range 50 {
		if d := e.Evaluate(context.Background(), c.SetID, request(c.Case(t, "valid"), fmt.Sprintf("198.51.100.%d", i))); d.Reason != threat.ReasonNone {
			t.Fatal(d.Reason)
		}
	}
	if n := store.CloneLen(); n != 0 {
		t.Errorf("%d certificates counted with clone detection off", n)
	}
}
