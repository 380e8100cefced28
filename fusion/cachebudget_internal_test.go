package fusion

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/mccgate/mcc/threat"
)

// bigChain is a presented chain of the largest shape the caps allow: a
// 15 KiB leaf (distinct per i) and three 15 KiB certificates after it.
func bigChain(i int) [][]byte {
	leaf := bytes.Repeat([]byte{byte(i)}, 15<<10)
	copy(leaf, fmt.Sprintf("leaf-%06d", i))
	chain := [][]byte{leaf}
	for j := range 3 {
		chain = append(chain, bytes.Repeat([]byte{byte('a' + j)}, 15<<10))
	}
	return chain
}

func trustedVerdict(i int) *verdict {
	return &verdict{
		trusted: true,
		certSHA: fmt.Sprintf("%064d", i),
		cert:    &threat.CertInfo{Serial: fmt.Sprintf("%x", i), Subject: "CN=com.example.bank,O=bank-prod", Issuer: "CN=bank CA"},
	}
}

// TestVerdictCacheByteBudget: 10,000 distinct chains of about 60 KiB each
// (620 MiB as the old cache held them) stay within the byte budget, the
// cache keeps hashes of the intermediates instead of copies, and the
// entries that fit are still found.
func TestVerdictCacheByteBudget(t *testing.T) {
	const budget = 4 << 20
	c := newVerdictCacheBytes(DefaultCacheSize, budget)
	for i := range 10000 {
		chain := bigChain(i)
		v := trustedVerdict(i)
		c.putChain(chain, v)
		if got := c.size(); got > budget {
			t.Fatalf("after %d chains: accounted %d bytes, budget %d", i+1, got, budget)
		}
		if v.rest != nil || len(v.restSums) != 3 || v.restSums[0] != sha256.Sum256(chain[1]) {
			t.Fatalf("chain %d: the verdict holds the intermediates (rest %d) or wrong hashes", i, len(v.rest))
		}
	}
	n := c.len()
	if n == 0 || n >= 10000 {
		t.Fatalf("%d entries after 10,000 chains of 60 KiB in %d bytes", n, budget)
	}
	// What is accounted is about what is held: at least the keys.
	if got := c.size(); got < int64(n)*15<<10 {
		t.Fatalf("accounted %d bytes for %d entries of 15 KiB keys", got, n)
	}
	// The most recent chain fits and is found with its presented chain.
	last := bigChain(9999)
	v := c.get(last[0])
	if v == nil {
		t.Fatal("the last chain put is not cached")
	}
	set := &Set{}
	set.rev.Store(v.rev)
	if !v.fresh(set, last, v.validFrom) {
		t.Fatal("the cached verdict does not match its own chain")
	}
	other := bigChain(9999)
	other[2] = bytes.Repeat([]byte{'z'}, 15<<10)
	if v.fresh(set, other, v.validFrom) {
		t.Fatal("a verdict matched a chain with other intermediates")
	}
}

// TestVerdictCacheKeepsHotEntries: an entry hit between floods of one-time
// chains survives them (second chance), so a client in use is not evicted
// by others passing through.
func TestVerdictCacheKeepsHotEntries(t *testing.T) {
	const budget = 1 << 20
	c := newVerdictCacheBytes(DefaultCacheSize, budget)
	hot := bigChain(-1)
	hv := trustedVerdict(-1)
	c.putChain(hot, hv)
	for i := range 2000 {
		c.putChain(bigChain(i), trustedVerdict(i))
		if c.get(hot[0]) != hv {
			t.Fatalf("the hot entry was evicted after %d one-time chains", i+1)
		}
		if got := c.size(); got > budget {
			t.Fatalf("accounted %d bytes, budget %d", got, budget)
		}
	}
}

// TestVerdictCacheRefusesUntrusted: a verdict whose chain did not verify
// is never cached, whatever its reason.
func TestVerdictCacheRefusesUntrusted(t *testing.T) {
	c := newVerdictCache(100)
	for i, r := range []threat.Reason{threat.ReasonCertUntrusted, threat.ReasonCertMalformed, threat.ReasonCertExpired, threat.ReasonNone} {
		chain := bigChain(i)
		c.putChain(chain, &verdict{reason: r})
		c.put(chain[0], &verdict{reason: r})
		if c.get(chain[0]) != nil || c.len() != 0 || c.size() != 0 {
			t.Fatalf("%q verdict without a verified chain was cached", r)
		}
	}
}

// TestSetCacheBudget: cache.max_bytes reaches the set's cache.
func TestSetCacheBudget(t *testing.T) {
	if c := newSetCache(&Set{CacheMaxBytes: 1 << 20}, 10); c.maxBytes != 1<<20 || c.max != 10 {
		t.Fatalf("budget %d, max %d", c.maxBytes, c.max)
	}
	if c := newSetCache(&Set{}, 10); c.maxBytes != DefaultCacheMaxBytes {
		t.Fatalf("default budget %d", c.maxBytes)
	}
}
