package caddymod

import (
	"crypto/x509"
	"sync"
)

// pooledChainLen is the chain length a pooled buffer holds without growing:
// a leaf and up to three intermediates, more than real app chains carry.
const pooledChainLen = 4

// rawChain is a reusable backing array for fusion.Request.PeerCertificates.
// The engine keeps nothing of the request's slices (it copies what it
// caches), but escape analysis cannot see that, so without the pool every
// request would allocate the array.
type rawChain struct {
	der [][]byte
}

var rawChainPool = sync.Pool{
	New: func() any { return &rawChain{der: make([][]byte, 0, pooledChainLen)} },
}

// getRawChain returns a pooled buffer holding the DER of each certificate,
// leaf first. Give it back with release once the engine returned.
func getRawChain(certs []*x509.Certificate) *rawChain {
	c := rawChainPool.Get().(*rawChain)
	for _, cert := range certs {
		c.der = append(c.der, cert.Raw)
	}
	return c
}

// release returns the buffer to the pool; nil is a no-op. The slots are
// cleared so that the pool does not keep certificates alive.
func (c *rawChain) release() {
	if c == nil {
		return
	}
	clear(c.der)
	c.der = c.der[:0]
	rawChainPool.Put(c)
}
