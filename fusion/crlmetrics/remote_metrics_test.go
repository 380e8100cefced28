package crlmetrics_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/crlmetrics"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestRemoteURLMetrics: a revocation URL is exported as up (1, then 0 once
// the server fails) with the time of its last good fetch, labelled by set
// and URL.
func TestRemoteURLMetrics(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	crl := c.CA().SignCRL(t, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: c.Now, NextUpdate: c.Now.AddDate(0, 0, 7)})
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		_, _ = w.Write(crl)
	}))
	defer srv.Close()
	url := srv.URL + "/crl.pem" // plain http: loopback
	cfg, err := fusion.LoadFile(c.WriteSetFile(t, "url.yaml", func(s *fusion.SetConfig) {
		s.Revocation.URLs = []string{url}
		s.Revocation.URLInterval = fusion.Duration(time.Second)
	}))
	if err != nil {
		t.Fatal(err)
	}
	e, err := fusion.NewEngine(cfg, fusion.Options{Clock: func() time.Time { return c.Now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.FollowRevocationURLs(ctx) }()
	defer func() { cancel(); <-done }()

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(crlmetrics.New("mcc", "authz", e.Config, func() time.Time { return c.Now }))
	gather := func() map[string]*dto.Metric {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*dto.Metric{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				out[mf.GetName()] = m
			}
		}
		return out
	}
	wait := func(what string, cond func(map[string]*dto.Metric) bool) map[string]*dto.Metric {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if got := gather(); cond(got) {
				return got
			} else if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, got)
			}
		}
	}
	up := "mcc_authz_revocation_url_up"
	last := "mcc_authz_revocation_url_last_success_timestamp_seconds"
	got := wait("up", func(m map[string]*dto.Metric) bool { return m[up] != nil && m[up].GetGauge().GetValue() == 1 })
	labels := map[string]string{}
	for _, l := range got[up].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["fusion_set"] != "bank-prod" || labels["url"] != url || len(labels) != 2 {
		t.Fatalf("labels %v", labels)
	}
	ok := got[last].GetGauge().GetValue()
	if ok < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last success %v", ok)
	}
	down.Store(true)
	got = wait("down", func(m map[string]*dto.Metric) bool { return m[up].GetGauge().GetValue() == 0 })
	// Further failed fetches leave the last success where it was.
	failingSince := got[last].GetGauge().GetValue()
	time.Sleep(1500 * time.Millisecond)
	if got = gather(); got[last].GetGauge().GetValue() != failingSince || got[up].GetGauge().GetValue() != 0 {
		t.Fatalf("while failing: up %v, last success %v (was %v)", got[up].GetGauge().GetValue(), got[last].GetGauge().GetValue(), failingSince)
	}
}
