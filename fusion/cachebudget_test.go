package fusion_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestCacheByteBudgetDistinctLargeChains is the attack of issue 9 point 5
// through Evaluate: 10,000 distinct chains of about 62 KiB, each verifying
// against the set's CA (a 15 KiB leaf and three 15 KiB certificates after
// it). The old cache kept a copy of every one (about 650 MiB); the
// accounted size now stays within the set's byte budget.
func TestCacheByteBudgetDistinctLargeChains(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	padding, _ := asn1.Marshal(make([]byte, 15<<10))
	pad := func(x *x509.Certificate) {
		x.ExtraExtensions = append(x.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 9}, Value: padding})
	}
	// The certificates after the leaf need not be on the path: a client
	// may present any parsable certificates within the caps.
	var rest [][]byte
	for range 3 {
		rest = append(rest, c.Issue(t, nil, pad).Chain[0])
	}
	ctx := context.Background()
	for i := range 10000 {
		leaf := c.Issue(t, nil, pad).Chain[0]
		chain := append([][]byte{leaf}, rest...)
		d := e.Evaluate(ctx, c.SetID, &fusion.Request{PeerCertificates: chain, ClientIP: fmt.Sprintf("198.51.%d.%d", i/250, i%250)})
		if d.Action != fusion.Allow || d.CacheHit {
			t.Fatalf("chain %d (%d bytes): %+v", i, len(leaf)*4, d)
		}
		if got := fusion.CacheBytesForTest(e, c.SetID); got > fusion.DefaultCacheMaxBytes {
			t.Fatalf("after %d chains: verdict cache accounts %d bytes, budget %d", i+1, got, fusion.DefaultCacheMaxBytes)
		}
	}
	st := e.Stats()
	if st.CacheEntries == 0 || st.CacheEntries >= 10000 {
		t.Fatalf("%d cache entries after 10,000 chains of 62 KiB", st.CacheEntries)
	}
	t.Logf("%d entries, %d bytes accounted", st.CacheEntries, fusion.CacheBytesForTest(e, c.SetID))
}

// TestCacheSkipsUnverifiableChains: chains that do not verify against the
// set's CA (another CA, garbage, expired, not yet valid) are never cached,
// so a client cannot fill the cache with chains it mints itself; those that
// verify are cached whatever their verdict (a revoked certificate).
func TestCacheSkipsUnverifiableChains(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	ctx := context.Background()
	for _, name := range []string{"untrusted_ca", "garbage_der", "malformed_intermediate", "expired", "not_yet_valid", "sha1_signature", "unknown_critical_extension"} {
		tc := c.Case(t, name)
		for round := range 3 {
			d := e.Evaluate(ctx, c.SetID, &fusion.Request{PeerCertificates: tc.Chain})
			if d.Reason != tc.Want || d.CacheHit {
				t.Fatalf("%s round %d: %+v", name, round, d)
			}
		}
	}
	if st := e.Stats(); st.CacheEntries != 0 || fusion.CacheBytesForTest(e, c.SetID) != 0 {
		t.Fatalf("unverifiable chains were cached: %+v", st)
	}
	revoked := c.Case(t, "revoked_serial")
	for round := range 2 {
		if d := e.Evaluate(ctx, c.SetID, &fusion.Request{PeerCertificates: revoked.Chain}); d.Reason != threat.ReasonCertRevoked || d.CacheHit != (round == 1) {
			t.Fatalf("revoked round %d: %+v", round, d)
		}
	}
}
