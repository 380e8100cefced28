package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// buildsCA reads the set's CA certificate the way a gateway operator does.
func buildsCA(t *testing.T, e *apiEnv) []byte {
	t.Helper()
	resp, body := e.do(t, "GET", "/v1/fusion-sets/bank-prod/ca.pem", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ca.pem: %d %s", resp.StatusCode, body)
	}
	return body
}

func TestBuildsIssueBundleRecordAndAudit(t *testing.T) {
	e := startBankProd(t)
	b := e.issue(t, "build-4711", map[string]any{"buildUser": "ci", "buildHost": "runner-7", "sdkVersion": "35",
		"buildDate": "2026-12-01T08:00:00Z", "validFor": "720h"})
	c := b.Certificate
	if c.FusionSet != "bank-prod" || c.AppID != "com.example.bank" || c.BuildID != "build-4711" || c.Kind != "build" ||
		c.Profile != "modern" || c.Status != "valid" || c.IssuedBy != "issue" {
		t.Fatalf("certificate %+v", c)
	}
	if b.Bundle.Format != string(pki.FormatModern2023) || len(b.Bundle.Password) != 64 || b.LegacyBundle != nil {
		t.Fatalf("bundle %s, password of %d characters, legacy %v", b.Bundle.Format, len(b.Bundle.Password), b.LegacyBundle)
	}
	// The bundle opens with its password to the certificate the API names.
	_, leaf, _, err := pki.DecodeBundle(b.Bundle.Data, b.Bundle.Password)
	if err != nil || pki.Fingerprint(leaf.Raw) != c.SHA256 || pki.FormatSerial(leaf.SerialNumber) != c.Serial {
		t.Fatalf("bundle: %v", err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 721*60*60*1e9 {
		t.Fatalf("validFor 720h gave a lifetime of %s", d)
	}
	// The record verifies offline against the set's CA, bundle included,
	// and states the published version it was certified under.
	ca, err := pki.ParseCertificatePEM(buildsCA(t, e))
	if err != nil {
		t.Fatal(err)
	}
	data, err := pki.CanonicalRecord(b.Record)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := pki.VerifyRecord(data, ca, &pki.BundleToVerify{Data: b.Bundle.Data, Password: b.Bundle.Password})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Protections == nil || rec.Protections.Source != "fusion-sets/bank-prod/versions/1" || rec.Protections.Mode != "defense" ||
		fmt.Sprint(rec.Protections.Builds.Blocked) != "[build-1337]" || rec.Build.User != "ci" || rec.Build.SDKVersion != "35" {
		t.Fatalf("record %+v protections %+v", rec, rec.Protections)
	}
	// The stored row holds the record; the audit log the issuance.
	var got struct {
		PEM    string          `json:"pem"`
		Record json.RawMessage `json:"record"`
		Status string          `json:"status"`
	}
	e.json(t, "GET", "/v1/certificates/"+c.Serial, e.token[auth.ScopeRead], nil, http.StatusOK, &got)
	if got.Status != "valid" || !bytes.Equal(compactJSON(t, got.Record), compactJSON(t, b.Record)) || got.PEM != rec.Certificate.PEM {
		t.Fatalf("stored certificate differs: %s", got.Status)
	}
	entries, err := e.db.ReadAudit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Action != store.AuditCertIssue || last.Subject != "certificate/"+c.Serial || last.Actor != "token:issue" ||
		last.Detail["buildId"] != "build-4711" {
		t.Fatalf("audit entry %+v", last)
	}
	for _, en := range entries {
		if raw, _ := json.Marshal(en); bytes.Contains(raw, []byte(b.Bundle.Password)) {
			t.Fatal("the bundle password is in the audit log")
		}
	}
}

func compactJSON(t *testing.T, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBuildsProfiles(t *testing.T) {
	e := startBankProd(t)
	legacy := e.issue(t, "b-legacy", map[string]any{"profile": "legacy"})
	if legacy.Bundle.Format != string(pki.FormatLegacyDES) || legacy.LegacyBundle != nil {
		t.Fatalf("legacy profile: %s, %v", legacy.Bundle.Format, legacy.LegacyBundle)
	}
	both := e.issue(t, "b-both", map[string]any{"profile": "both"})
	if both.Bundle.Format != string(pki.FormatModern2023) || both.LegacyBundle == nil || both.LegacyBundle.Format != string(pki.FormatLegacyDES) ||
		both.LegacyBundle.Password == both.Bundle.Password {
		t.Fatalf("both profile: %+v", both.LegacyBundle)
	}
	// The platform profiles: the 3DES bundle in an AES-256-GCM envelope,
	// named as such in the record, opened by DecodeBundle.
	ios := e.issue(t, "b-ios", map[string]any{"profile": "ios"})
	android := e.issue(t, "b-android", map[string]any{"profile": "android"})
	for _, p := range []issuedBuild{ios, android} {
		var rec pki.Record
		if err := json.Unmarshal(p.Record, &rec); err != nil {
			t.Fatal(err)
		}
		if p.Bundle.Format != string(pki.FormatLegacyEnveloped) || !pki.IsEnvelope(p.Bundle.Data) || p.LegacyBundle != nil ||
			rec.Bundle.Cipher != "AES-256-GCM" || !strings.HasSuffix(rec.Bundle.File, ".p12e") {
			t.Fatalf("platform profile: format %s, record %+v", p.Bundle.Format, rec.Bundle)
		}
	}
	for _, b := range []*issuedBundle{&legacy.Bundle, &both.Bundle, both.LegacyBundle, &ios.Bundle, &android.Bundle} {
		if _, leaf, _, err := pki.DecodeBundle(b.Data, b.Password); err != nil || leaf == nil {
			t.Fatalf("%s bundle does not open: %v", b.Format, err)
		}
	}
	var rec pki.Record
	if err := json.Unmarshal(both.Record, &rec); err != nil || rec.LegacyBundle == nil || rec.LegacyBundle.SHA256 != both.LegacyBundle.SHA256 {
		t.Fatalf("record of both: %v %+v", err, rec.LegacyBundle)
	}
}

func TestBuildsRefusals(t *testing.T) {
	e := startBankProd(t)
	path := "/v1/fusion-sets/bank-prod/builds"
	for name, c := range map[string]struct {
		body   string
		status int
		typ    string
		fields []string
	}{
		"no app":          {`{"buildId":"b1"}`, 422, "invalid-request", []string{"appId"}},
		"other app":       {`{"appId":"com.example.other","buildId":"b1"}`, 422, "invalid-request", []string{"appId"}},
		"no build":        {`{"appId":"com.example.bank"}`, 422, "invalid-request", []string{"buildId"}},
		"control char":    {`{"appId":"com.example.bank","buildId":"b1","buildUser":"a\u0007b"}`, 422, "invalid-request", []string{"buildUser"}},
		"long host":       {`{"appId":"com.example.bank","buildId":"b1","buildHost":"` + strings.Repeat("h", 129) + `"}`, 422, "invalid-request", []string{"buildHost"}},
		"bad profile":     {`{"appId":"com.example.bank","buildId":"b1","profile":"rc2"}`, 422, "invalid-request", []string{"profile"}},
		"short validity":  {`{"appId":"com.example.bank","buildId":"b1","validFor":"1s"}`, 422, "invalid-request", []string{"validFor"}},
		"bad validity":    {`{"appId":"com.example.bank","buildId":"b1","validFor":"a year"}`, 422, "invalid-request", []string{"validFor"}},
		"outlives the CA": {`{"appId":"com.example.bank","buildId":"b1","validFor":"100000h"}`, 422, "invalid-request", []string{"validFor"}},
		"bad date":        {`{"appId":"com.example.bank","buildId":"b1","buildDate":"yesterday"}`, 422, "invalid-request", []string{"buildDate"}},
		"unknown field":   {`{"appId":"com.example.bank","buildId":"b1","key":"x"}`, 422, "invalid-request", []string{"key"}},
		"wrong type":      {`{"appId":"com.example.bank","buildId":7}`, 422, "invalid-request", []string{"buildId"}},
		"not JSON":        {`{"appId":`, 400, "malformed-body", nil},
		// The set would refuse it: max_lifetime 400d, and build-1337 is blocked.
		"over max_lifetime": {`{"appId":"com.example.bank","buildId":"b1","validFor":"10000h"}`, 422, "invalid-request", nil},
		"blocked build":     {`{"appId":"com.example.bank","buildId":"build-1337"}`, 422, "invalid-request", nil},
	} {
		t.Run(name, func(t *testing.T) {
			var p apiProblem
			e.json(t, "POST", path, e.token[auth.ScopeIssue], c.body, c.status, &p)
			if p.Type != "urn:mcc:problem:"+c.typ || fmt.Sprint(p.fields()) != fmt.Sprint(c.fields) {
				t.Fatalf("problem %+v, want %s with fields %v", p, c.typ, c.fields)
			}
		})
	}
	ok := `{"appId":"com.example.bank","buildId":"b1"}`
	e.json(t, "POST", "/v1/fusion-sets/no-such-set/builds", e.token[auth.ScopeIssue], ok, 404, nil)
	e.json(t, "POST", "/v1/fusion-sets/Bad_Set/builds", e.token[auth.ScopeIssue], ok, 404, nil)
	e.json(t, "POST", path, "", ok, 401, nil)
	e.json(t, "POST", path, e.token[auth.ScopeRead], ok, 403, nil)
	e.json(t, "POST", path, e.token[auth.ScopeRevoke], ok, 403, nil)
	// Nothing above issued a certificate.
	var list struct{ Items []any }
	e.json(t, "GET", "/v1/certificates", e.token[auth.ScopeRead], nil, 200, &list)
	if len(list.Items) != 0 {
		t.Fatalf("refused requests issued %d certificates", len(list.Items))
	}
}

func TestIdemRetryReturnsTheSameBuild(t *testing.T) {
	e := startBankProd(t)
	path := "/v1/fusion-sets/bank-prod/builds"
	body := `{"appId":"com.example.bank","buildId":"b-42"}`
	post := func(scope auth.Scope, body, key string) (*http.Response, []byte) {
		return e.do(t, "POST", path, e.token[scope], body, "Content-Type", "application/json", "Idempotency-Key", key)
	}
	r1, first := post(auth.ScopeIssue, body, "ci-run-1")
	r2, again := post(auth.ScopeIssue, body, "ci-run-1")
	if r1.StatusCode != 201 || r2.StatusCode != 201 || !bytes.Equal(first, again) {
		t.Fatalf("retry: %d then %d, same body %v", r1.StatusCode, r2.StatusCode, bytes.Equal(first, again))
	}
	if r1.Header.Get("Idempotent-Replayed") != "" || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("Idempotent-Replayed: %q then %q", r1.Header.Get("Idempotent-Replayed"), r2.Header.Get("Idempotent-Replayed"))
	}
	// Same key, another body: refused, nothing issued.
	r3, p := post(auth.ScopeIssue, `{"appId":"com.example.bank","buildId":"b-43"}`, "ci-run-1")
	if r3.StatusCode != 422 || !strings.Contains(string(p), "urn:mcc:problem:idempotency-key-reused") {
		t.Fatalf("same key, other body: %d %s", r3.StatusCode, p)
	}
	// Keys belong to a token: the admin's "ci-run-1" is its own.
	if r4, other := post(auth.ScopeAdmin, body, "ci-run-1"); r4.StatusCode != 201 || bytes.Equal(other, first) {
		t.Fatalf("another token's key: %d, same body %v", r4.StatusCode, bytes.Equal(other, first))
	}
	for _, bad := range []string{strings.Repeat("k", 256), "tab\there", "ключ"} {
		if r, p := post(auth.ScopeIssue, body, bad); r.StatusCode != 422 || !strings.Contains(string(p), "Idempotency-Key") {
			t.Fatalf("key %q: %d %s", bad, r.StatusCode, p)
		}
	}
	// Two certificates in all (the issue token's and the admin's), and the
	// stored response does not show the bundle password.
	var b issuedBuild
	json.Unmarshal(first, &b)
	var n int
	if err := e.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM certificates`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d certificates, %v", n, err)
	}
	rows, err := e.db.Query(context.Background(), `SELECT response_sealed FROM idempotency`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var sealed []byte
		rows.Scan(&sealed)
		if len(sealed) == 0 || bytes.Contains(sealed, []byte(b.Bundle.Password)) || bytes.Contains(sealed, []byte(`"password"`)) {
			t.Fatal("the stored response is not sealed")
		}
	}
}

// TestIdemConcurrentRetriesIssueOnce sends one request eight times at
// once with one key: one certificate; every answer is that build (201) or
// "still running" (409).
func TestIdemConcurrentRetriesIssueOnce(t *testing.T) {
	e := startBankProd(t)
	serials := idemRace(t, []*apiEnv{e}, 8, `{"appId":"com.example.bank","buildId":"b-race"}`, "race")
	var n int
	if err := e.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM certificates`).Scan(&n); err != nil || n != 1 || len(serials) != 1 {
		t.Fatalf("%d certificates (%v), %d serials answered", n, err, len(serials))
	}
}

// idemRace sends one build request n times at once with one key, spread
// over the instances, and returns the serials of the 201 answers; any
// answer but 201 or 409 (still running) fails the test.
func idemRace(t *testing.T, envs []*apiEnv, n int, body, key string) map[string]bool {
	var wg sync.WaitGroup
	var mu sync.Mutex
	serials := map[string]bool{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := envs[i%len(envs)]
			resp, data := env.do(t, "POST", "/v1/fusion-sets/bank-prod/builds", env.token[auth.ScopeIssue], body,
				"Content-Type", "application/json", "Idempotency-Key", key)
			mu.Lock()
			defer mu.Unlock()
			switch resp.StatusCode {
			case 201:
				var b issuedBuild
				json.Unmarshal(data, &b)
				serials[b.Certificate.Serial] = true
			case 409:
			default:
				t.Errorf("%d %s", resp.StatusCode, data)
			}
		}()
	}
	wg.Wait()
	return serials
}

// TestBuildsServerClockBeforeCA: a server whose clock went back past its
// CA's start answers 503 naming the clock, not 500, and issues nothing.
func TestBuildsServerClockBeforeCA(t *testing.T) {
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: frozenClock()})
	e.publish(t, enrollDoc) // the set's CA starts now
	e.clock.Add(-2 * time.Hour)
	// Not e.send: it rightly fails any 5xx an input causes; this one is
	// the server's state.
	req := newRequest(t, e.srv.URL, "POST", "/v1/fusion-sets/bank-prod/builds", e.token[auth.ScopeIssue],
		`{"appId":"com.example.bank","buildId":"b-clock"}`, "Content-Type", "application/json")
	resp, body := roundTripWith(t, e.srv.Client(), req)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "check the server's clock") ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("issuing before the CA's start: %d %s", resp.StatusCode, body)
	}
}
