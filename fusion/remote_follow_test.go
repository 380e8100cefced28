package fusion_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/threat"
)

// remoteCRLServer is a real TLS server serving one CRL with an ETag, as the
// mcc server's crl.pem route does.
type remoteCRLServer struct {
	srv          *httptest.Server
	mu           sync.Mutex
	body         []byte
	notModified  atomic.Int64
	requests     atomic.Int64
	unavailable  atomic.Bool
	caFile, path string
}

func newRemoteCRLServer(t *testing.T, dir string) *remoteCRLServer {
	r := &remoteCRLServer{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		if r.unavailable.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		r.mu.Lock()
		body := r.body
		r.mu.Unlock()
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:]) + `"`
		w.Header().Set("ETag", etag)
		if req.Header.Get("If-None-Match") == etag {
			r.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	r.caFile = filepath.Join(dir, "crl-server-ca.pem")
	if err := os.WriteFile(r.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r.path = "/v1/fusion-sets/bank-prod/crl.pem"
	return r
}

func (r *remoteCRLServer) url() string { return r.srv.URL + r.path }

// serve replaces the served CRL by one signed by key for ca.
func (r *remoteCRLServer) serve(t *testing.T, ca *x509.Certificate, key crypto.Signer, number int64, now time.Time, revoked ...*big.Int) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 7), RevokedCertificateEntries: entries,
	}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.body = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	r.mu.Unlock()
}

// eventually polls cond every 20ms for at most limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRemoteFollowURL: a set following a CRL URL over real TLS (trusting
// the server through url_ca) refuses a certificate within the interval
// after the CRL that revokes it is served (a verdict cached as allowed
// included); keeps the last good CRL when the server answers with a CRL of
// another CA, an older CRL, an error, or is gone; says each failure once;
// and keeps the fetched CRL across a reload of the fusion set file.
func TestRemoteFollowURL(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	srv := newRemoteCRLServer(t, c.Dir)
	srv.serve(t, c.CACert, c.CAKey, 10, c.Now)
	const interval = time.Second
	path := c.WriteSetFile(t, "remote.yaml", func(s *fusion.SetConfig) {
		s.Revocation.URLs = []string{srv.url()}
		s.Revocation.URLInterval = fusion.Duration(interval)
		s.Revocation.URLCA = filepath.Base(srv.caFile)
	})
	core, logs := observer.New(zap.InfoLevel)
	e := loadEngine(t, path, fusion.Options{Clock: func() time.Time { return c.Now }, Logger: zap.New(core)})
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		e.FollowRevocationURLs(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-followed
	})

	victim := c.Issue(t, nil, nil)
	evaluate := func() fusion.Decision {
		return e.Evaluate(context.Background(), c.SetID, &fusion.Request{PeerCertificates: victim.Chain, ClientIP: "192.0.2.9"})
	}
	state := func() fusion.RevocationURLState {
		set, _ := e.Set(c.SetID)
		st := set.RevocationURLStates()
		if len(st) != 1 {
			t.Fatalf("states %+v", st)
		}
		return st[0]
	}
	eventually(t, 10*time.Second, "first fetch", func() bool { return state().Up })
	if st := state(); st.URL != srv.url() || st.Field != "fusion_sets[0].revocation.urls[0]" || st.LastSuccess.IsZero() {
		t.Fatalf("state %+v", st)
	}
	if d := evaluate(); d.Action != fusion.Allow {
		t.Fatalf("before the revocation: %+v", d)
	}
	// The unchanged CRL is not fetched again: If-None-Match answers 304.
	eventually(t, 5*time.Second, "a 304", func() bool { return srv.notModified.Load() > 0 })

	// Revoked on the server: refused within the interval (plus the
	// follower's tick and a fetch), although the allow verdict is cached.
	srv.serve(t, c.CACert, c.CAKey, 11, c.Now, victim.Leaf().SerialNumber)
	served := time.Now()
	eventually(t, interval+2*time.Second, "the revocation enforced", func() bool { return evaluate().Reason == threat.ReasonCertRevoked })
	t.Logf("revocation enforced %s after the CRL was served (interval %s)", time.Since(served).Round(time.Millisecond), interval)
	set, _ := e.Set(c.SetID)
	if st := set.CRLStates(c.Now); len(st) != 1 || st[0].Number != "11" || st[0].File != srv.url() {
		t.Fatalf("CRL states %+v", st)
	}

	stillRevoked := func(after string) {
		t.Helper()
		if d := evaluate(); d.Reason != threat.ReasonCertRevoked {
			t.Fatalf("%s: the last good CRL was dropped: %+v", after, d)
		}
		set, _ := e.Set(c.SetID)
		if st := set.CRLStates(c.Now); len(st) != 1 || st[0].Number != "11" {
			t.Fatalf("%s: CRL in force %+v", after, st)
		}
	}
	warnings := func() int {
		return logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("revocation URL failing").Len()
	}
	recoveries := func() int { return logs.FilterMessageSnippet("revocation URL working again").Len() }

	// A CRL of another CA (empty: it would un-revoke) is refused.
	other := testpki.NewCA(t, "other")
	srv.serve(t, other.Cert, other.Key, 12, c.Now)
	eventually(t, 5*time.Second, "refusal of another CA's CRL", func() bool { return !state().Up })
	stillRevoked("another CA's CRL")
	if warnings() != 1 {
		t.Fatalf("%d failure warnings, want 1", warnings())
	}
	// Refused at every fetch, said once.
	time.Sleep(2*interval + 500*time.Millisecond)
	if warnings() != 1 {
		t.Fatalf("the same failure was logged %d times", warnings())
	}

	// Back to the good CRL: working again, said once.
	srv.serve(t, c.CACert, c.CAKey, 11, c.Now, victim.Leaf().SerialNumber)
	eventually(t, 5*time.Second, "recovery", func() bool { return state().Up })
	if recoveries() != 1 {
		t.Fatalf("%d recovery messages", recoveries())
	}

	// A rollback to an older number (validly signed) is refused.
	srv.serve(t, c.CACert, c.CAKey, 9, c.Now)
	eventually(t, 5*time.Second, "refusal of an older CRL", func() bool { return !state().Up })
	stillRevoked("an older CRL")

	// The server down: the last good CRL stays, the last success does not move.
	lastOK := state().LastSuccess
	srv.unavailable.Store(true)
	before := srv.requests.Load()
	eventually(t, 5*time.Second, "a fetch of the down server", func() bool { return srv.requests.Load() > before+1 })
	stillRevoked("server down")
	if st := state(); st.Up || !st.LastSuccess.Equal(lastOK) {
		t.Fatalf("server down: %+v", st)
	}

	// A reload of the fusion set file keeps the fetched CRL at once,
	// although the server is still down.
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e.Update(cfg)
	stillRevoked("reload")
}

// TestRemoteURLProblems: revocation URL settings are checked at load.
func TestRemoteURLProblems(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	tests := []struct {
		name  string
		edit  func(*fusion.SetConfig)
		field string
	}{
		{"plain http off loopback", func(s *fusion.SetConfig) { s.Revocation.URLs = []string{"http://mcc.example/crl.pem"} }, "fusion_sets[0].revocation.urls[0]"},
		{"credentials", func(s *fusion.SetConfig) { s.Revocation.URLs = []string{"https://user:secret@mcc.example/crl.pem"} }, "fusion_sets[0].revocation.urls[0]"},
		{"not a URL", func(s *fusion.SetConfig) { s.Revocation.URLs = []string{"crl.pem"} }, "fusion_sets[0].revocation.urls[0]"},
		{"ftp", func(s *fusion.SetConfig) { s.Revocation.URLs = []string{"ftp://mcc.example/crl.pem"} }, "fusion_sets[0].revocation.urls[0]"},
		{"duplicate", func(s *fusion.SetConfig) {
			s.Revocation.URLs = []string{"https://mcc.example/crl.pem", "https://mcc.example/crl.pem"}
		}, "fusion_sets[0].revocation.urls[1]"},
		{"interval too short", func(s *fusion.SetConfig) {
			s.Revocation.URLs = []string{"https://mcc.example/crl.pem"}
			s.Revocation.URLInterval = fusion.Duration(100 * time.Millisecond)
		}, "fusion_sets[0].revocation.url_interval"},
		{"interval without urls", func(s *fusion.SetConfig) { s.Revocation.URLInterval = fusion.Duration(time.Minute) }, "fusion_sets[0].revocation.url_interval"},
		{"url_ca missing", func(s *fusion.SetConfig) {
			s.Revocation.URLs = []string{"https://mcc.example/crl.pem"}
			s.Revocation.URLCA = "nope.pem"
		}, "fusion_sets[0].revocation.url_ca"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fusion.LoadFile(c.WriteSetFile(t, "bad.yaml", tc.edit))
			le, ok := err.(*fusion.LoadError)
			if !ok {
				t.Fatalf("want a *LoadError, got %v", err)
			}
			found := false
			for _, p := range le.Problems {
				found = found || p.Field == tc.field && p.Line > 0
				if strings.Contains(p.Msg, "secret") {
					t.Errorf("the credential is quoted: %s", p.Msg)
				}
			}
			if !found {
				t.Fatalf("no problem at %s: %v", tc.field, err)
			}
		})
	}
	// Loopback http is fine (the mcc server's default listener).
	if _, err := fusion.LoadFile(c.WriteSetFile(t, "ok.yaml", func(s *fusion.SetConfig) {
		s.Revocation.URLs = []string{"http://127.0.0.1:8700/v1/fusion-sets/bank-prod/crl.pem"}
	})); err != nil {
		t.Fatalf("loopback http refused: %v", err)
	}
}
