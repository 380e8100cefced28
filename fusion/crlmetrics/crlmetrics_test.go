package crlmetrics_test

import (
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/crlmetrics"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

func TestCollector(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	next := c.Now.AddDate(0, 0, 7)
	crl := c.CA().SignCRL(t, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: c.Now, NextUpdate: next})
	if err := os.WriteFile(filepath.Join(c.Dir, "crl.pem"), crl, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := fusion.LoadFile(c.WriteSetFile(t, "crl.yaml", func(s *fusion.SetConfig) { s.Revocation.CRLs = []string{"crl.pem"} }))
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(crlmetrics.New("mcc", "authz", func() *fusion.Config { return cfg }, func() time.Time { return now }))
	for _, tc := range []struct {
		at     time.Time
		secs   string
		status string
	}{
		{c.Now, "604800", "0"},
		{next.Add(-24 * time.Hour), "86400", "1"},
		{next.Add(time.Hour), "-3600", "2"},
	} {
		now = tc.at
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != "bank-prod" {
					t.Fatalf("%s labels %v", mf.GetName(), m.GetLabel())
				}
				got[mf.GetName()] = strconv.FormatFloat(m.GetGauge().GetValue(), 'f', -1, 64)
			}
		}
		if got["mcc_authz_crl_next_update_seconds"] != tc.secs || got["mcc_authz_crl_status"] != tc.status || len(got) != 2 {
			t.Fatalf("at %v: %v, want %s seconds, status %s", tc.at, got, tc.secs, tc.status)
		}
	}
}
