package main

import (
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestValidateCRLFreshness: `mcc validate` used to say ok for a CRL three
// days past its NextUpdate. An expired CRL is now a problem (exit 1), one
// in the last quarter of its validity a warning (exit 0).
func TestValidateCRLFreshness(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	setFile := c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) { s.Revocation.CRLs = []string{"crl.pem"} })
	writeCRL := func(number int64, thisUpdate, nextUpdate time.Time) {
		t.Helper()
		crl := c.CA().SignCRL(t, &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate})
		if err := os.WriteFile(filepath.Join(c.Dir, "crl.pem"), crl, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()

	writeCRL(1, now.AddDate(0, 0, -10), now.AddDate(0, 0, -3))
	code, out, errOut := runCLI(t, "validate", setFile)
	wantOneLineError(t, code, errOut, 1, "1 problem")
	if !strings.HasPrefix(out, setFile+":") || !strings.Contains(out, ": fusion_sets[0].revocation.crls[0]: CRL 1 (crl.pem) expired 72h") || strings.Count(out, "\n") != 1 {
		t.Fatalf("expired CRL: stdout %q", out)
	}

	writeCRL(2, now.AddDate(0, 0, -6), now.Add(20*time.Hour))
	code, out, errOut = runCLI(t, "validate", setFile)
	if code != 0 || errOut != "" || !strings.Contains(out, ": fusion_sets[0].revocation.crls[0]: warning: CRL 2 (crl.pem) expires in ") || !strings.HasSuffix(out, "\nok: 1 fusion set\n") {
		t.Fatalf("stale-soon CRL: code %d stdout %q stderr %q", code, out, errOut)
	}

	writeCRL(3, now, now.AddDate(0, 0, 7))
	if code, out, errOut := runCLI(t, "validate", setFile); code != 0 || out != "ok: 1 fusion set\n" {
		t.Fatalf("fresh CRL: code %d stdout %q stderr %q", code, out, errOut)
	}
}
