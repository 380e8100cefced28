package caddymod

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestFollowURLCaddy: Caddy, from a Caddyfile, enforces a revocation
// served at a fusion set's revocation URL within the interval (a verdict
// cached as allowed included), and keeps it when the URL's server goes away.
func TestFollowURLCaddy(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)

	var mu sync.Mutex
	served := corp.CA().SignCRL(t, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: corp.Now.Add(-time.Minute), NextUpdate: corp.Now.AddDate(0, 0, 7)})
	crlSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(served)
	}))
	defer crlSrv.Close()

	const interval = time.Second
	setFile := corp.WriteSetFile(t, "followed.yaml", func(sc *fusion.SetConfig) {
		sc.Revocation.URLs = []string{crlSrv.URL + "/v1/fusion-sets/bank-prod/crl.pem"}
		sc.Revocation.URLInterval = fusion.Duration(interval)
	})
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		watch_interval 50ms
	}
}
`, setFile) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)
	accept := "Accept: application/json"

	victim := corp.Issue(t, nil, nil)
	cert := victim.TLSCertificate()
	if r := newClient(t, srv, &cert, "").mustGet(t, "/", accept); r.status != http.StatusOK {
		t.Fatalf("before the revocation: %d %q", r.status, r.body)
	}

	next := corp.CA().SignCRL(t, &x509.RevocationList{Number: big.NewInt(2), ThisUpdate: corp.Now.Add(-time.Minute), NextUpdate: corp.Now.AddDate(0, 0, 7),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: victim.Leaf().SerialNumber, RevocationTime: corp.Now}}})
	mu.Lock()
	served = next
	mu.Unlock()
	start := time.Now()
	revoked := func() bool {
		return blockReason(newClient(t, srv, &cert, "").mustGet(t, "/", accept)) == string(threat.ReasonCertRevoked)
	}
	waitFor(t, "the served revocation to take effect", revoked)
	if took := time.Since(start); took > interval+3*time.Second {
		t.Fatalf("revocation enforced after %s, interval %s", took, interval)
	}

	// The server goes away: the fetched CRL stays in force.
	crlSrv.Close()
	time.Sleep(2 * interval)
	if !revoked() {
		t.Fatal("the revocation was dropped when the server went away")
	}
	metrics := scrapeMetrics(t)
	found := false
	for name, v := range metrics {
		if strings.HasPrefix(name, "caddy_mcc_revocation_url_up{") {
			found = true
			if v != 0 {
				t.Errorf("%s = %v with the server gone", name, v)
			}
		}
	}
	if !found {
		t.Errorf("no caddy_mcc_revocation_url_up series")
	}
}
