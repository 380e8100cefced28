package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/mccgate/mcc/server/store"
)

func init() {
	register(benchmark{name: "certs", what: "certificate list: p50/p99 of filtered pages with 100,000 certificates stored", run: benchCerts})
}

func benchCerts(ctx context.Context, o options) error {
	s, err := startCertsServer(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close()
	total, rounds := 100_000, 500
	if o.Quick {
		total, rounds = 2_000, 20
	}
	start := time.Now()
	if err := fillCertificates(ctx, s.srv.DB(), total); err != nil {
		return err
	}
	fmt.Printf("database         %s\n", certsDialect(o))
	fmt.Printf("filled           %d certificates in %s (direct inserts, one in 16 revoked)\n", total, time.Since(start).Round(time.Millisecond))

	now := time.Now().UTC()
	queries := []struct{ name, query string }{
		{"by set, valid", "fusionSet=set-1&status=valid&limit=50"},
		{"by build", "fusionSet=set-2&appId=com.example.app2&buildId=build-17&limit=50"},
		{"revoked", "fusionSet=set-1&status=revoked&limit=50"},
		{"revoked, none", "fusionSet=set-3&status=revoked&limit=50"},
		{"issued between", "issuedAfter=" + url.QueryEscape(now.Add(-48*time.Hour).Format(time.RFC3339)) +
			"&issuedBefore=" + url.QueryEscape(now.Add(-24*time.Hour).Format(time.RFC3339)) + "&limit=50"},
		{"expiring soon", "fusionSet=set-0&expiresBefore=" + url.QueryEscape(now.Add(30*24*time.Hour).Format(time.RFC3339)) + "&limit=50"},
	}
	for _, q := range queries {
		var samples []time.Duration
		cursor := ""
		for range rounds {
			path := "/v1/certificates?" + q.query
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			t0 := time.Now()
			status, body, err := s.call(ctx, "GET", path, s.admin, "", nil)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("%s: %d %s", path, status, body)
			}
			samples = append(samples, time.Since(t0))
			// Walk the pages, back to the first at the end: deep pages
			// are measured too.
			var page struct {
				NextCursor string `json:"nextCursor"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return err
			}
			cursor = page.NextCursor
		}
		certsLatency(q.name, samples)
	}
	fmt.Println("budget           p99 < 20ms for a filtered page")
	return nil
}

// fillCertificates inserts n certificates directly (not through
// issuance: the list is measured, not signing): 4 sets, 3 apps, builds of
// 50 certificates, issued over the last 90 days, valid for a year (some
// expired), one in sixteen revoked.
func fillCertificates(ctx context.Context, db *store.DB, n int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC()
	const batch = 10_000
	for done := 0; done < n; done += batch {
		err := db.Tx(ctx, func(tx *store.Tx) error {
			insert, closeStmt, err := tx.CertificateInsert(ctx)
			if err != nil {
				return err
			}
			defer closeStmt()
			for i := done; i < min(done+batch, n); i++ {
				issued := now.Add(-time.Duration(rng.Int64N(int64(90 * 24 * time.Hour))))
				notAfter := issued.Add(365 * 24 * time.Hour)
				if i%20 == 0 {
					notAfter = issued.Add(24 * time.Hour)
				}
				c := store.Certificate{
					Serial: fmt.Sprintf("%x%08x", rng.Uint64()|1<<63, i), SHA256: fmt.Sprintf("%064x", i),
					FusionSet: fmt.Sprintf("set-%d", i%4), AppID: fmt.Sprintf("com.example.app%d", i%3), BuildID: fmt.Sprintf("build-%d", i/50%40),
					Kind: store.KindBuild, Profile: "modern", NotBefore: issued, NotAfter: notAfter, IssuedAt: issued,
					IssuedBy: "bench", CertPEM: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n", Record: "{}",
				}
				if err := insert(c); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	_, err := db.Exec(ctx, `UPDATE certificates SET revoked_ns = issued_ns, revocation_reason = 'superseded', revoked_by = 'bench' WHERE sha256 LIKE '%5'`)
	return err
}
