package fusion_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"path/filepath"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestCacheBudgetFromSetFile: cache.max_bytes bounds the set's cache in
// the engine (1 MiB here: 200 chains of 15 KiB leaves do not fit).
func TestCacheBudgetFromSetFile(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	path := c.WriteSetFile(t, "budget.yaml", func(s *fusion.SetConfig) {
		s.Cache = &fusion.CacheConfig{MaxBytes: 1 << 20}
	})
	e := loadEngine(t, path, fusion.Options{})
	padding, _ := asn1.Marshal(make([]byte, 15<<10))
	for i := range 200 {
		leaf := c.Issue(t, nil, func(x *x509.Certificate) {
			x.ExtraExtensions = append(x.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 9}, Value: padding})
		})
		if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: leaf.Chain}); d.Action != fusion.Allow {
			t.Fatalf("chain %d: %+v", i, d)
		}
		if st := e.Stats(); st.CacheBytes > 1<<20 {
			t.Fatalf("after %d chains: %d bytes cached, budget 1 MiB", i+1, st.CacheBytes)
		}
	}
	if st := e.Stats(); st.CacheEntries == 0 || st.CacheEntries >= 200 {
		t.Fatalf("stats %+v", st)
	}
}

// TestExpiredCRLAtHandshake: at the TLS stage (Caddy's verifier) an expired
// CRL stays CONFIG_ERROR, scored 0, rather than a HANDSHAKE_FAILED that
// would count towards banning every client.
func TestExpiredCRLAtHandshake(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	writeCRLAt(t, filepath.Join(c.Dir, "crl.pem"), c.CACert, c.CAKey, 1, c.Now.AddDate(0, 0, -10), c.Now.AddDate(0, 0, -3))
	e := loadEngine(t, c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) {
		s.Revocation.CRLs = []string{"crl.pem"}
		s.FailSafe = &fusion.FailSafe{Threshold: 10}
	}), fusion.Options{})
	for i := range 3 {
		d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: c.Case(t, "valid").Chain, ClientIP: "192.0.2.9", Handshake: true})
		if d.Reason != threat.ReasonConfigError || d.Event.CurrentThreatEventScore != 0 || d.Event.FailSafeEnforce {
			t.Fatalf("round %d: %+v %+v", i, d, d.Event)
		}
	}
}
