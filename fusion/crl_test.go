package fusion_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// writeCRLAt writes a CRL with the given number and validity, signed by ca,
// the way `mcc ca crl` does (new file renamed over the old one).
func writeCRLAt(t *testing.T, path string, ca *x509.Certificate, key crypto.Signer, number int64, thisUpdate, nextUpdate time.Time, serials ...*big.Int) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate, RevokedCertificateEntries: entries,
	}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCRLExpiredFailsClosed: a CRL three days past its NextUpdate used to
// load without a word and keep allowing every certificate. Now every
// certificate it covers is refused with CONFIG_ERROR (as Envoy fails every
// handshake validated against an expired CRL), the state is exposed, and
// `mcc validate`'s report names it; a certificate of another issuer is not
// judged by it.
func TestCRLExpiredFailsClosed(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	crl := filepath.Join(c.Dir, "crl.pem")
	writeCRLAt(t, crl, c.CACert, c.CAKey, 7, c.Now.AddDate(0, 0, -10), c.Now.AddDate(0, 0, -3))
	path := c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) { s.Revocation.CRLs = []string{"crl.pem"} })
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		t.Fatalf("an expired CRL must load (and fail closed), not stop the gateway: %v", err)
	}
	e, err := fusion.NewEngine(cfg, fusion.Options{Clock: func() time.Time { return c.Now }})
	if err != nil {
		t.Fatal(err)
	}
	valid := c.Case(t, "valid")
	for round := range 2 {
		d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain, ClientIP: "192.0.2.7"})
		if d.Action != fusion.Block || d.Reason != threat.ReasonConfigError {
			t.Fatalf("round %d: valid certificate under an expired CRL: %+v", round, d)
		}
		if rd := d.Event.ReasonData; rd["crlStatus"] != fusion.CRLExpired || rd["crl"] != "crl.pem" || rd["nextUpdate"] != c.Now.AddDate(0, 0, -3).UTC().Format(time.RFC3339) {
			t.Fatalf("round %d: reasonData %v", round, rd)
		}
		if d.Event.CurrentThreatEventScore != 0 {
			t.Fatalf("an expired CRL is the operator's failure, but scored %d against the client", d.Event.CurrentThreatEventScore)
		}
	}
	// The chain through the client-presented intermediate is covered by
	// that intermediate's CRL, which the set does not have.
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: c.Case(t, "valid_via_intermediate").Chain}); d.Action != fusion.Allow {
		t.Fatalf("certificate of another issuer: %+v", d)
	}
	set := cfg.Sets[c.SetID]
	states := set.CRLStates(c.Now)
	if len(states) != 1 || states[0].Status != fusion.CRLExpired || states[0].Number != "7" || states[0].File != crl {
		t.Fatalf("CRLStates %+v", states)
	}
	if s, ok := set.CRLSecondsUntilNextUpdate(c.Now); !ok || s != -3*24*3600 {
		t.Fatalf("CRLSecondsUntilNextUpdate = %v, %v", s, ok)
	}
	expired, soon := cfg.CRLProblems(c.Now)
	if len(expired) != 1 || len(soon) != 0 || expired[0].Line == 0 || !strings.HasPrefix(expired[0].Error(), path+":") ||
		!strings.Contains(expired[0].Error(), ": fusion_sets[0].revocation.crls[0]: CRL 7 (crl.pem) expired 72h0m0s ago") {
		t.Fatalf("CRLProblems = %v, %v", expired, soon)
	}

	// Re-signed (the next number): certificates are allowed again.
	writeCRLAt(t, crl, c.CACert, c.CAKey, 8, c.Now.Add(-time.Minute), c.Now.AddDate(0, 0, 7))
	if err := e.ReloadRevocations(); err != nil {
		t.Fatal(err)
	}
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain}); d.Action != fusion.Allow {
		t.Fatalf("after re-signing: %+v", d)
	}
}

// TestCRLExpiryEndsCachedVerdicts: a verdict cached while the CRL was fresh
// does not outlive its NextUpdate, and the CRL is "stale soon" in the last
// quarter of its validity, with a warning logged once.
func TestCRLExpiryEndsCachedVerdicts(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	crl := filepath.Join(c.Dir, "crl.pem")
	next := c.Now.AddDate(0, 0, 7)
	writeCRLAt(t, crl, c.CACert, c.CAKey, 1, c.Now.Add(-time.Minute), next)
	clock := newFakeClock(c.Now)
	core, logs := observer.New(zapcore.InfoLevel)
	e := loadEngine(t, c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) { s.Revocation.CRLs = []string{"crl.pem"} }),
		fusion.Options{Clock: clock.Now, Logger: zap.New(core)})
	set, _ := e.Set(c.SetID)
	valid := c.Case(t, "valid")
	for round := range 2 {
		if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain}); d.Action != fusion.Allow || d.CacheHit != (round == 1) {
			t.Fatalf("fresh CRL, round %d: %+v", round, d)
		}
	}
	if st := set.CRLStates(clock.Now())[0].Status; st != fusion.CRLFresh {
		t.Fatalf("status %q at the start", st)
	}
	mon := fusion.NewCRLMonitor(zap.New(core))
	mon.Check(e.Config(), clock.Now())
	if logs.Len() != 0 {
		t.Fatalf("logged for a fresh CRL: %v", logs.All())
	}

	clock.Set(next.Add(-24 * time.Hour)) // the last quarter of 7 days is 42h
	if st := set.CRLStates(clock.Now())[0].Status; st != fusion.CRLStaleSoon {
		t.Fatalf("status %q a day before NextUpdate", st)
	}
	mon.Check(e.Config(), clock.Now())
	mon.Check(e.Config(), clock.Now())
	if w := logs.FilterLevelExact(zapcore.WarnLevel).All(); len(w) != 1 || w[0].ContextMap()["fusion_set"] != c.SetID || w[0].ContextMap()["crl_number"] != "1" {
		t.Fatalf("stale-soon warnings: %v", logs.All())
	}
	if expired, soon := e.Config().CRLProblems(clock.Now()); len(expired) != 0 || len(soon) != 1 || !strings.Contains(soon[0].Error(), "warning: CRL 1 (crl.pem) expires in 24h0m0s") {
		t.Fatalf("CRLProblems = %v, %v", expired, soon)
	}
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain}); d.Action != fusion.Allow || !d.CacheHit {
		t.Fatalf("stale soon is still valid: %+v", d)
	}

	clock.Set(next.Add(time.Second))
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: valid.Chain}); d.Reason != threat.ReasonConfigError || d.CacheHit {
		t.Fatalf("cached verdict past NextUpdate: %+v", d)
	}
	mon.Check(e.Config(), clock.Now())
	if errs := logs.FilterLevelExact(zapcore.ErrorLevel).All(); len(errs) != 1 {
		t.Fatalf("expiry errors logged: %v", logs.All())
	}
}

// TestCRLRollbackRefused: a validly signed CRL with a lower CRL number
// (one that does not yet list a revoked certificate) used to replace the
// newer one. Both a full reload (Watch) and a revocation reload now refuse
// it, say why, and keep the newer CRL in force.
func TestCRLRollbackRefused(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	victim := c.Issue(t, nil, nil)
	crl := filepath.Join(c.Dir, "crl.pem")
	old := filepath.Join(c.Dir, "crl-4.pem")
	writeCRLAt(t, old, c.CACert, c.CAKey, 4, c.Now.Add(-48*time.Hour), c.Now.AddDate(0, 0, 5))
	writeCRLAt(t, crl, c.CACert, c.CAKey, 5, c.Now.Add(-time.Hour), c.Now.AddDate(0, 0, 7), victim.Leaf().SerialNumber)
	e := loadEngine(t, c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) { s.Revocation.CRLs = []string{"crl.pem"} }), fusion.Options{})
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("revoked by CRL 5: %+v", d)
	}
	errc := make(chan error, 4)
	reloaded := make(chan *fusion.Config, 4)
	startWatch(t, e, func(cfg *fusion.Config) { trySend(reloaded, cfg) }, func(err error) { trySend(errc, err) })

	if err := copyFile(old, crl); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		var le *fusion.LoadError
		if !errors.As(err, &le) || len(le.Problems) != 1 || le.Problems[0].Field != "fusion_sets[0].revocation.crls[0]" ||
			!strings.Contains(le.Problems[0].Msg, "CRL number 4") || !strings.Contains(le.Problems[0].Msg, "older than CRL number 5") {
			t.Fatalf("rollback error: %v", err)
		}
	case cfg := <-reloaded:
		t.Fatalf("older CRL loaded: %v", cfg.Sets[c.SetID].CRLStates(c.Now))
	case <-waitCtx(t).Done():
		t.Fatal("no reload error for an older CRL")
	}
	if d := e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain}); d.Reason != threat.ReasonCertRevoked {
		t.Fatalf("the rollback un-revoked the certificate: %+v", d)
	}
	if err := e.ReloadRevocations(); err == nil || !strings.Contains(err.Error(), "older than CRL number 5") {
		t.Fatalf("revocation reload of the older CRL: %v", err)
	}
	set, _ := e.Set(c.SetID)
	if st := set.CRLStates(c.Now); st[0].Number != "5" {
		t.Fatalf("in force: %+v", st)
	}
	// A newer one is taken.
	writeCRLAt(t, crl, c.CACert, c.CAKey, 6, c.Now, c.Now.AddDate(0, 0, 7))
	select {
	case cfg := <-reloaded:
		if st := cfg.Sets[c.SetID].CRLStates(c.Now); st[0].Number != "6" {
			t.Fatalf("after CRL 6: %+v", st)
		}
	case <-waitCtx(t).Done():
		t.Fatal("CRL 6 not loaded")
	}
}
