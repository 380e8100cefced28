package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLiveFeedAt1000EventsPerSecond: with 1,000 events a second arriving
// through the webhook sink (the path gateways use), an open live feed
// delivers every one exactly once and in commit order. It logs the rates
// and the delay from the sink's Deliver to the feed (a figure, not an
// assertion: this machine is shared).
func TestLiveFeedAt1000EventsPerSecond(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	b.signIn(e.read)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/console/stream?after=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	var seqs []int64
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "data: ") {
				continue
			}
			var ev struct {
				Seq int64  `json:"seq"`
				ID  string `json:"id"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) != nil || ev.ID == "" {
				continue
			}
			mu.Lock()
			if _, dup := arrived[ev.ID]; dup {
				arrived[ev.ID+"#dup"] = time.Now()
			} else {
				arrived[ev.ID] = time.Now()
			}
			seqs = append(seqs, ev.Seq)
			mu.Unlock()
		}
	}()

	sink := e.sink(t)
	defer sink.Close()
	const perTick, ticks = 100, 30 // 100 events every 100 ms for 3 s
	sent := map[string]time.Time{}
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	for i := range ticks {
		batch := sampleEvents(e.clock.Now(), perTick)
		for j, ev := range batch {
			ev.ExternalID = "live-" + strconv.Itoa(i*perTick+j)
		}
		now := time.Now()
		if err := sink.Deliver(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		for _, ev := range batch {
			sent[ev.ID] = now
		}
		<-tick.C
	}
	tick.Stop()
	sendTime := time.Since(start)

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(arrived)
		mu.Unlock()
		if n >= len(sent) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	allIn := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	var delays []time.Duration
	for id, at := range sent {
		got, ok := arrived[id]
		if !ok {
			t.Errorf("event %s never reached the live feed", id)
			continue
		}
		delays = append(delays, got.Sub(at))
	}
	for id := range arrived {
		if strings.HasSuffix(id, "#dup") {
			t.Errorf("event %s reached the feed twice", strings.TrimSuffix(id, "#dup"))
		}
	}
	if !slices.IsSorted(seqs) {
		t.Error("the feed's sequence numbers are not in order")
	}
	if len(delays) == 0 {
		t.Fatal("nothing arrived")
	}
	slices.Sort(delays)
	t.Logf("live feed: %d events sent at %.0f/s, all %d on the feed after %v (%.0f/s); delay from Deliver to the feed p50 %v, p99 %v, max %v",
		len(sent), float64(len(sent))/sendTime.Seconds(), len(delays), allIn.Round(time.Millisecond), float64(len(delays))/allIn.Seconds(),
		delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)*99/100].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
}
