package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// BenchmarkOverview24h renders the overview for the last 24 h over
// $MCC_CONSOLE_BENCH_EVENTS stored events (default 1,000,000, spread over
// 23 h, eight fusion sets, all reasons, both actions), and, in the same
// run, reads one plain ListEvents page of 50 for comparison. Each reports
// ms/op of server time (no network, no browser).
//
//	go test -run '^$' -bench Overview24h -benchtime 20x ./server/console/
func BenchmarkOverview24h(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("MCC_CONSOLE_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().UTC()
	s, err := server.Open(context.Background(), server.Config{DataDir: b.TempDir(), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	reasons := []string{"CERT_REVOKED", "NO_CLIENT_CERT", "CERT_EXPIRED", "CERT_UNTRUSTED", "IDENTITY_MISMATCH", "RATE_ANOMALY", "WEAK_CRYPTO", "CERT_KIND_REFUSED"}
	start := time.Now()
	const batch = 1000
	rows := make([]store.Event, batch)
	for i := 0; i < n; i += batch {
		for j := range rows {
			k := i + j
			t := now.Add(-23 * time.Hour / time.Duration(n) * time.Duration(k)) // inside the 24 h window
			rows[j] = store.Event{
				ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", k, k), Time: t, Received: t,
				FusionSet: fmt.Sprintf("set-%d", k%8), Reason: reasons[k%len(reasons)], Action: []string{"blocked", "reported"}[k%2],
				ClientIP: fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255), DeviceID: fmt.Sprintf("dev-%d", k%5000),
				ExternalID: fmt.Sprintf("req-%d", k), Doc: `{"threatEventsScore":40,"reasonCode":"` + reasons[k%len(reasons)] + `"}`,
			}
		}
		if _, err := s.DB().InsertEvents(context.Background(), rows); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("stored %d events in %v", n, time.Since(start).Round(time.Second))

	secret, _, err := s.Tokens().Create(context.Background(), "bench", []auth.Scope{auth.ScopeRead}, 0, "test")
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	req := httptest.NewRequest("POST", "https://example.com/console/signin", strings.NewReader(url.Values{"token": {secret}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://example.com")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookies) == 0 {
		b.Fatalf("sign-in: %d", rec.Code)
	}

	b.Run("overview", func(b *testing.B) {
		for b.Loop() {
			req := httptest.NewRequest("GET", "https://example.com/console/overview?range=24h", nil)
			req.AddCookie(cookies[0])
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<strong id="total">`+strconv.Itoa(n)+`</strong>`) {
				body := rec.Body.String()
				i := strings.Index(body, `id="total"`)
				b.Fatalf("overview: %d, %s", rec.Code, body[max(i, 0):max(i, 0)+40])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/render")
	})
	b.Run("listevents-page", func(b *testing.B) {
		for b.Loop() {
			page, _, err := s.DB().ListEvents(context.Background(), store.EventQuery{From: now.Add(-24 * time.Hour), To: now.Add(time.Minute), Limit: 50})
			if err != nil || len(page) != 50 {
				b.Fatalf("list: %d, %v", len(page), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	})
}
