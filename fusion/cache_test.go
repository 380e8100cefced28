package fusion_test

import (
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

func TestCacheHitsCounted(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	valid := c.Case(t, "valid")
	for i := 0; i < 3; i++ {
		d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1"))
		if d.Action != fusion.Allow || d.CacheHit != (i > 0) {
			t.Fatalf("round %d: %+v", i, d)
		}
		if d.Cert == nil || d.Cert.AppID != "com.example.bank" || d.Cert.BuildID != fusiontest.GoodBuild {
			t.Fatalf("round %d: cert info %+v", i, d.Cert)
		}
	}
	if st := e.Stats(); st.CacheHits != 2 || st.CacheMisses != 1 || st.CacheEntries != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A different presented chain for the same leaf is not served from the
	// cache: the verdict must not depend on who filled it.
	d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: [][]byte{valid.Chain[0], {0x30, 0x00}}})
	if d.CacheHit || d.Reason != threat.ReasonCertMalformed {
		t.Fatalf("other chain: %+v", d)
	}
	// Update drops the cache.
	e.Update(e.Config())
	if st := e.Stats(); st.CacheEntries != 0 {
		t.Fatalf("entries after Update: %d", st.CacheEntries)
	}
	if d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1")); d.CacheHit {
		t.Fatalf("hit after Update")
	}
}

func TestCacheBounded(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{CacheSize: 3})
	for i := 0; i < 10; i++ {
		tc := c.Issue(t, nil, nil)
		if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: tc.Chain}); d.Action != fusion.Allow {
			t.Fatalf("issued cert %d: %+v", i, d)
		}
	}
	if n := e.Stats().CacheEntries; n > 3 || n == 0 {
		t.Fatalf("cache holds %d entries, bound 3", n)
	}
}

func TestCacheDoesNotOutliveRevocation(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	valid := c.Case(t, "valid")
	for i := 0; i < 2; i++ {
		if d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1")); d.Action != fusion.Allow {
			t.Fatalf("before revocation: %+v", d)
		}
	}
	set, _ := e.Set(c.SetID)
	gen := set.RevocationGeneration()
	appendRevoked(t, c.RevocationFile, valid.Leaf())
	if err := e.ReloadRevocations(); err != nil {
		t.Fatal(err)
	}
	if set.RevocationGeneration() != gen+1 {
		t.Fatalf("generation %d, want %d", set.RevocationGeneration(), gen+1)
	}
	d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1"))
	if d.Reason != threat.ReasonCertRevoked || d.CacheHit {
		t.Fatalf("after revocation: %+v", d)
	}
	if d.Event.ReasonData["serial"] != valid.Leaf().SerialNumber.Text(16) {
		t.Errorf("reasonData %v", d.Event.ReasonData)
	}
	found := false
	for _, s := range set.RevokedSerials() {
		found = found || s == valid.Leaf().SerialNumber.Text(16)
	}
	if !found {
		t.Errorf("RevokedSerials misses the new serial: %v", set.RevokedSerials())
	}
}

func TestCacheDoesNotOutliveExpiry(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	clock := newFakeClock(c.Now)
	e := loadEngine(t, c.SetFile, fusion.Options{Clock: clock.Now})
	valid := c.Case(t, "valid")
	for i := 0; i < 2; i++ {
		if d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1")); d.Action != fusion.Allow || d.CacheHit != (i == 1) {
			t.Fatalf("before expiry, round %d: %+v", i, d)
		}
	}
	clock.Set(valid.Leaf().NotAfter.Add(time.Second))
	d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1"))
	if d.Reason != threat.ReasonCertExpired || d.CacheHit {
		t.Fatalf("after expiry: %+v", d)
	}
	// Expired stays expired, and is not cached: an expired chain is never
	// verified, and only chains that verify are cached.
	if d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1")); d.Reason != threat.ReasonCertExpired || d.CacheHit {
		t.Fatalf("expired, cached: %+v", d)
	}
	// Moving the clock back before NotBefore: not yet valid, not a stale hit.
	clock.Set(valid.Leaf().NotBefore.Add(-time.Second))
	if d := e.Evaluate(context.Background(), c.SetID, request(valid, "192.0.2.1")); d.Reason != threat.ReasonCertNotYetValid || d.CacheHit {
		t.Fatalf("before NotBefore: %+v", d)
	}
}

// appendRevoked adds cert's serial to a revocation list, the way `mcc
// revoke` does (write a new file, rename over the old one).
func appendRevoked(t testing.TB, path string, cert *x509.Certificate) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte(cert.SerialNumber.Text(16)+"\n")...)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
