package envoyext

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
)

// TestCRLFreshnessMetrics: mcc authz exports the freshness of each fusion
// set's CRL on its admin /metrics, so an operator can alert before the CRL
// expires and every covered certificate is refused.
func TestCRLFreshnessMetrics(t *testing.T) {
	p := newTestPKI(t, "bank-prod", "com.example.bank")
	if _, err := p.ca.RefreshCRL(2 * 24 * time.Hour); err != nil {
		t.Fatalf("RefreshCRL: %v", err)
	}
	crl := filepath.Join(p.dir, "ca", pki.CRLFile)
	cfg := p.loadConfig(t, fmt.Sprintf(`fusion_sets:
  - id: bank-prod
    trusted_ca: {file: %s}
    app_id: com.example.bank
    revocation: {crls: [%s]}
    mode: defense
    threat_events: false
`, p.caFile(), crl))
	h := startHarness(t, cfg, nil)
	m := h.metrics()
	if !hasMetric(m, `mcc_authz_crl_status{fusion_set="bank-prod"}`, "0") {
		t.Fatalf("no fresh mcc_authz_crl_status for bank-prod in:\n%s", grepLines(m, "crl"))
	}
	var left float64
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, `mcc_authz_crl_next_update_seconds{fusion_set="bank-prod"} `); ok {
			left, _ = strconv.ParseFloat(v, 64)
		}
	}
	if want := (2 * 24 * time.Hour).Seconds(); left <= 0 || math.Abs(left-want) > 3600 {
		t.Fatalf("mcc_authz_crl_next_update_seconds = %v, want about %v", left, want)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
