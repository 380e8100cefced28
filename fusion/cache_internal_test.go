package fusion

import (
	"fmt"
	"sync"
	"testing"
)

func cacheKey(i int) []byte { return []byte(fmt.Sprintf("leaf-%04d", i)) }

// TestVerdictCacheMergesAndReplaces: entries are found before and after
// they move from the locked map to the lock-free one, and a replaced
// verdict is what the next lookup returns wherever the entry lives.
func TestVerdictCacheMergesAndReplaces(t *testing.T) {
	c := newVerdictCache(1000)
	verdicts := make([]*verdict, 100)
	for i := range verdicts {
		verdicts[i] = &verdict{trusted: true, certSHA: fmt.Sprint(i)}
		c.put(cacheKey(i), verdicts[i])
		if got := c.get(cacheKey(i)); got != verdicts[i] {
			t.Fatalf("entry %d right after put: %v", i, got)
		}
	}
	// Lookups of entries not merged yet take the lock; enough of them
	// merge everything into the read map.
	for round := 0; c.pending.Load() != 0; round++ {
		if round == 100 {
			t.Fatalf("%d entries still not merged after %d rounds of lookups", c.pending.Load(), round)
		}
		for i := range verdicts {
			if got := c.get(cacheKey(i)); got != verdicts[i] {
				t.Fatalf("entry %d: %v", i, got)
			}
		}
	}
	if n := len(*c.read.Load()); n != len(verdicts) || c.pending.Load() != 0 {
		t.Fatalf("after lookups: read map %d entries, %d pending; want all %d merged", n, c.pending.Load(), len(verdicts))
	}
	if n := c.len(); n != len(verdicts) {
		t.Fatalf("len %d, want %d", n, len(verdicts))
	}
	fresh := &verdict{trusted: true, certSHA: "replaced"}
	c.put(cacheKey(7), fresh)
	if got := c.get(cacheKey(7)); got != fresh {
		t.Fatalf("replaced entry in the read map: %v", got)
	}
	c.put(cacheKey(500), verdicts[0])
	newer := &verdict{trusted: true, certSHA: "newer"}
	c.put(cacheKey(500), newer)
	if got := c.get(cacheKey(500)); got != newer {
		t.Fatalf("replaced entry in the dirty map: %v", got)
	}
	if got := c.get(cacheKey(999)); got != nil {
		t.Fatalf("unknown key: %v", got)
	}
	if n := c.len(); n != len(verdicts)+1 {
		t.Fatalf("len %d, want %d", n, len(verdicts)+1)
	}
}

// TestVerdictCacheBound: the cache never holds more than its bound, whether
// the entries to drop are merged or not, and an evicted entry put again
// counts again.
func TestVerdictCacheBound(t *testing.T) {
	const max = 10
	c := newVerdictCache(max)
	for i := range 200 {
		c.put(cacheKey(i), &verdict{trusted: true})
		if n := c.len(); n > max || n == 0 {
			t.Fatalf("after %d puts: %d entries, bound %d", i+1, n, max)
		}
		// Lookups merge from time to time, so evictions hit both maps.
		for j := range 5 {
			c.get(cacheKey(i - j))
		}
	}
	found := 0
	for i := range 200 {
		if c.get(cacheKey(i)) != nil {
			found++
		}
	}
	if found != c.len() || found > max {
		t.Fatalf("found %d entries, len %d, bound %d", found, c.len(), max)
	}
	for i := range 200 {
		c.put(cacheKey(i), &verdict{trusted: true})
	}
	if n := c.len(); n != max {
		t.Fatalf("full cache: %d entries, want %d", n, max)
	}
	none := newVerdictCache(0)
	none.put(cacheKey(1), &verdict{trusted: true})
	if none.get(cacheKey(1)) != nil || none.len() != 0 {
		t.Fatal("a cache of size 0 keeps entries")
	}
}

// TestVerdictCacheConcurrent is for the race detector: lookups, new
// entries, replacements and evictions at once.
func TestVerdictCacheConcurrent(t *testing.T) {
	c := newVerdictCache(50)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				k := cacheKey((i*7 + g) % 80)
				if v := c.get(k); v == nil || i%5 == 0 {
					c.put(k, &verdict{trusted: true, certSHA: string(k)})
				} else if v.certSHA != string(k) {
					t.Errorf("key %s: verdict of %s", k, v.certSHA)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > 50 || n == 0 {
		t.Fatalf("%d entries, bound 50", n)
	}
}

func TestHitCounter(t *testing.T) {
	var c hitCounter
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				c.add()
			}
		})
	}
	wg.Wait()
	if n := c.load(); n != 4000 {
		t.Fatalf("counted %d, want 4000", n)
	}
}
