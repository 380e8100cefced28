package envoyext

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// certCacheEntryOverhead is what one entry costs beyond its DER bytes: the
// map slot, the list element, the key and the slice headers, rounded up.
// Counting it keeps a flood of tiny entries within the budget too.
const certCacheEntryOverhead = 256

// certCache remembers the DER chain decoded from one (certificate, XFCC)
// pair of strings. A device on a keep-alive connection sends the same two
// strings with every request; a map lookup replaces the URL unescaping, PEM
// and base64 decoding.
//
// It is keyed by a SHA-256 of the two strings, never by the strings
// themselves, and bounded by the bytes it holds (maxBytes): inputs are
// size-capped before they get here, and the oldest entries are evicted
// first when a new one would not fit. Churn (many distinct certificates)
// only costs the decoding the cache would have saved.
type certCache struct {
	maxBytes int64

	mu    sync.RWMutex
	m     map[[sha256.Size]byte]*list.Element
	order list.List // of *certEntry, oldest at the front
	bytes int64
}

type certEntry struct {
	key   [sha256.Size]byte
	chain [][]byte
	size  int64
}

func newCertCache(maxBytes int64) *certCache {
	if maxBytes <= 0 {
		maxBytes = DefaultCertCacheBytes
	}
	return &certCache{maxBytes: maxBytes, m: map[[sha256.Size]byte]*list.Element{}}
}

// certCacheKey hashes the certificate and XFCC strings, length-prefixed so
// that no two pairs share a key.
func certCacheKey(cert string, xfcc []string) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	write := func(s string) {
		l := uint64(len(s))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		// Through a stack buffer: []byte(s) would copy the whole header
		// (about 1 KiB of URL-encoded PEM) onto the heap on every Check.
		var buf [256]byte
		for len(s) > 0 {
			k := copy(buf[:], s)
			h.Write(buf[:k])
			s = s[k:]
		}
	}
	write(cert)
	for _, x := range xfcc {
		write(x)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *certCache) get(k [sha256.Size]byte) ([][]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	return el.Value.(*certEntry).chain, true
}

func (c *certCache) put(k [sha256.Size]byte, chain [][]byte) {
	size := int64(certCacheEntryOverhead)
	for _, der := range chain {
		size += int64(len(der)) + 24
	}
	if size > c.maxBytes/16 {
		// One entry never takes more than a sixteenth of the budget.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	for c.bytes+size > c.maxBytes {
		front := c.order.Front()
		if front == nil {
			break
		}
		old := c.order.Remove(front).(*certEntry)
		delete(c.m, old.key)
		c.bytes -= old.size
	}
	c.m[k] = c.order.PushBack(&certEntry{key: k, chain: chain, size: size})
	c.bytes += size
}

// stats returns the number of entries and the bytes accounted to them.
func (c *certCache) stats() (entries int, bytes int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m), c.bytes
}
