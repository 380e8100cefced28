package caddymod

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestCRLFreshnessMetrics: a real Caddy whose fusion set's CRL is in the
// last quarter of its validity exports caddy_mcc_crl_status 1 ("stale soon:
// re-sign with mcc ca crl") and a positive caddy_mcc_crl_next_update_seconds,
// so an operator is warned before every covered certificate is refused.
func TestCRLFreshnessMetrics(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)

	now := time.Now()
	crlPEM := corp.CA().SignCRL(t, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: now.Add(-6 * 24 * time.Hour),
		NextUpdate: now.Add(6 * time.Hour),
	})
	crl := filepath.Join(t.TempDir(), "crl.pem")
	writeFile(t, crl, crlPEM, 0o644)
	setFile := corp.WriteSetFile(t, "crl.yaml", func(sc *fusion.SetConfig) { sc.Revocation.CRLs = []string{crl} })

	loadCaddyfile(t, globalOptions()+fmt.Sprintf("\tmcc {\n\t\tfusion_sets %s\n\t}\n}\n", setFile)+
		site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr())))

	m := scrapeMetrics(t)
	status, ok := m[series("caddy_mcc_crl_status", "fusion_set", corp.SetID)]
	if !ok || status != 1 {
		t.Fatalf("caddy_mcc_crl_status{fusion_set=%q} = %v (present %v), want 1 (stale soon)", corp.SetID, status, ok)
	}
	left := m[series("caddy_mcc_crl_next_update_seconds", "fusion_set", corp.SetID)]
	if left <= 0 || left > 6*3600 {
		t.Fatalf("caddy_mcc_crl_next_update_seconds = %v, want within (0, 6h]", left)
	}
}
