package envoyext

import "sync"

// certCacheSize bounds the decoded-certificate cache. Entries are small
// (the DER chain) and keyed by Envoy's encoded strings, so a few thousand
// cover the devices that keep connections open to one gateway.
const certCacheSize = 4096

// certCache remembers the DER chain decoded from one (certificate, XFCC)
// pair of strings. A device on a keep-alive connection sends the same two
// strings with every request; a map lookup replaces the URL unescaping, PEM
// and base64 decoding. When full it starts over: churn (many distinct
// certificates) only costs the decoding the cache would have saved.
type certCache struct {
	mu sync.RWMutex
	m  map[certKey][][]byte
}

type certKey struct{ cert, xfcc string }

func (c *certCache) get(cert, xfcc string) ([][]byte, bool) {
	c.mu.RLock()
	chain, ok := c.m[certKey{cert, xfcc}]
	c.mu.RUnlock()
	return chain, ok
}

func (c *certCache) put(cert, xfcc string, chain [][]byte) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= certCacheSize {
		c.m = make(map[certKey][][]byte, 64)
	}
	c.m[certKey{cert, xfcc}] = chain
	c.mu.Unlock()
}
