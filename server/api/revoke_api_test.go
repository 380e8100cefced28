package api_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/auth"
)

// crlFetch reads the set's CRL as a gateway does and checks its signature
// against the set's CA.
func crlFetch(t *testing.T, e *apiEnv) (*x509.RevocationList, *http.Response) {
	t.Helper()
	resp, body := e.do(t, "GET", "/v1/fusion-sets/bank-prod/crl.pem", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("crl.pem: %d %s", resp.StatusCode, body)
	}
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("crl.pem is not a PEM CRL: %q", body)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertificatePEM(buildsCA(t, e))
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("CRL not signed by the set's CA: %v", err)
	}
	return crl, resp
}

func crlSerials(crl *x509.RevocationList) []string {
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, pki.FormatSerial(e.SerialNumber))
	}
	return out
}

type revokeResult struct {
	Revoked, AlreadyRevoked []string
	CRLs                    []struct {
		FusionSet string
		Number    int64
	}
}

func TestRevokeSerialBulkAndBuild(t *testing.T) {
	e := startBankProd(t)
	a := e.issue(t, "b1", nil).Certificate.Serial
	b := e.issue(t, "b2", nil).Certificate.Serial
	c1 := e.issue(t, "b3", nil).Certificate.Serial
	c2 := e.issue(t, "b3", nil).Certificate.Serial
	before, _ := crlFetch(t, e)

	// One serial, written as openssl prints it.
	var res revokeResult
	colons := strings.ToUpper(a)
	if len(colons)%2 == 1 {
		colons = "0" + colons
	}
	var parts []string
	for i := 0; i < len(colons); i += 2 {
		parts = append(parts, colons[i:i+2])
	}
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serial": strings.Join(parts, ":"), "reason": "key-compromise"}, 200, &res)
	if fmt.Sprint(res.Revoked) != "["+a+"]" || len(res.AlreadyRevoked) != 0 || len(res.CRLs) != 1 || res.CRLs[0].Number != before.Number.Int64()+1 {
		t.Fatalf("revoke one: %+v (CRL was %d)", res, before.Number)
	}
	crl, _ := crlFetch(t, e)
	if fmt.Sprint(crlSerials(crl)) != "["+a+"]" || crl.RevokedCertificateEntries[0].ReasonCode != 1 || crl.Number.Int64() != res.CRLs[0].Number {
		t.Fatalf("CRL after one revocation: %v number %d", crlSerials(crl), crl.Number)
	}

	// A bulk list with one unknown serial revokes nothing and names it.
	var p apiProblem
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serials": []string{b, "abcdef0123", a}}, 422, &p)
	if fmt.Sprint(p.fields()) != "[serials[1]]" {
		t.Fatalf("unknown serial problem %+v", p)
	}
	var cert struct{ Status string }
	e.json(t, "GET", "/v1/certificates/"+b, e.token[auth.ScopeRead], nil, 200, &cert)
	if cert.Status != "valid" {
		t.Fatalf("a refused bulk revocation revoked %s", b)
	}
	// Now without the unknown one: b revoked, a already.
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serials": []string{b, a, b}}, 200, &res)
	if fmt.Sprint(res.Revoked) != "["+b+"]" || fmt.Sprint(res.AlreadyRevoked) != "["+a+"]" {
		t.Fatalf("bulk: %+v", res)
	}
	// Every certificate of a build.
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"build": map[string]string{
		"fusionSet": "bank-prod", "appId": "com.example.bank", "buildId": "b3"}, "reason": "superseded"}, 200, &res)
	if len(res.Revoked) != 2 || !strings.Contains(fmt.Sprint(res.Revoked), c1) || !strings.Contains(fmt.Sprint(res.Revoked), c2) {
		t.Fatalf("build: %+v", res)
	}
	crl, _ = crlFetch(t, e)
	if len(crl.RevokedCertificateEntries) != 4 {
		t.Fatalf("CRL lists %v", crlSerials(crl))
	}
	e.json(t, "GET", "/v1/certificates/"+c1, e.token[auth.ScopeRead], nil, 200, &cert)
	if cert.Status != "revoked" {
		t.Fatalf("%s is %s", c1, cert.Status)
	}
	// The audit chain holds every revocation and still verifies.
	var verify struct {
		Valid   bool
		Entries int
	}
	e.json(t, "GET", "/v1/audit/verify", e.token[auth.ScopeRead], nil, 200, &verify)
	entries, _ := e.db.ReadAudit(context.Background(), 0, 500)
	revokes := 0
	for _, en := range entries {
		if en.Action == "certificate.revoke" {
			revokes++
		}
	}
	if !verify.Valid || revokes != 4 {
		t.Fatalf("audit valid %v, %d revocations", verify.Valid, revokes)
	}
}

func TestRevokeRefusals(t *testing.T) {
	e := startBankProd(t)
	s := e.issue(t, "b1", nil).Certificate.Serial
	for name, c := range map[string]struct {
		body   string
		status int
		fields string
	}{
		"nothing":       {`{}`, 422, "[serial]"},
		"two at once":   {`{"serial":"` + s + `","serials":["` + s + `"]}`, 422, "[serial]"},
		"empty list":    {`{"serials":[]}`, 422, "[serials]"},
		"malformed":     {`{"serials":["` + s + `","xyz"]}`, 422, "[serials[1]]"},
		"zero":          {`{"serial":"0"}`, 422, "[serial]"},
		"unknown":       {`{"serial":"0123456789abcdef"}`, 422, "[serial]"},
		"bad reason":    {`{"serial":"` + s + `","reason":"bored"}`, 422, "[reason]"},
		"partial build": {`{"build":{"fusionSet":"bank-prod","appId":"com.example.bank"}}`, 422, "[build]"},
		"no such build": {`{"build":{"fusionSet":"bank-prod","appId":"com.example.bank","buildId":"nope"}}`, 422, "[build]"},
		"unknown field": {`{"serial":"` + s + `","force":true}`, 422, "[force]"},
		"serial type":   {`{"serial":12}`, 422, "[serial]"},
		"trailing data": {`{"serial":"` + s + `"} {}`, 400, "[]"},
		"too many":      {`{"serials":[` + strings.Repeat(`"01",`, 1000) + `"01"]}`, 422, "[serials]"},
	} {
		t.Run(name, func(t *testing.T) {
			var p apiProblem
			e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], c.body, c.status, &p)
			if fmt.Sprint(p.fields()) != c.fields || strings.Contains(p.Detail, strings.Repeat("ab", 100)) {
				t.Fatalf("fields %v, want %s (%s)", p.fields(), c.fields, p.Detail)
			}
		})
	}
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeIssue], `{"serial":"`+s+`"}`, 403, nil)
	e.json(t, "POST", "/v1/revocations", "", `{"serial":"`+s+`"}`, 401, nil)
	var cert struct{ Status string }
	e.json(t, "GET", "/v1/certificates/"+s, e.token[auth.ScopeRead], nil, 200, &cert)
	if cert.Status != "valid" {
		t.Fatalf("a refused request revoked the certificate: %s", cert.Status)
	}
}

func TestCRLServedEmptyCachedAndRefreshed(t *testing.T) {
	e := startBankProd(t)
	crl, resp := crlFetch(t, e)
	if len(crl.RevokedCertificateEntries) != 0 || crl.Number.Int64() != 1 || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("first CRL: number %d, %d entries, Cache-Control %q", crl.Number, len(crl.RevokedCertificateEntries), resp.Header.Get("Cache-Control"))
	}
	etag := resp.Header.Get("ETag")
	// DER and PEM share the ETag; a matching If-None-Match is a 304.
	r, der := e.do(t, "GET", "/v1/fusion-sets/bank-prod/crl.der", "", "")
	if r.StatusCode != 200 || r.Header.Get("ETag") != etag || r.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("crl.der: %d %q %q", r.StatusCode, r.Header.Get("ETag"), r.Header.Get("Content-Type"))
	}
	if again, err := x509.ParseRevocationList(der); err != nil || again.Number.Cmp(crl.Number) != 0 {
		t.Fatalf("crl.der: %v", err)
	}
	for _, inm := range []string{etag, `"x", ` + etag, "W/" + etag, "*"} {
		if r, body := e.do(t, "GET", "/v1/fusion-sets/bank-prod/crl.pem", "", "", "If-None-Match", inm); r.StatusCode != 304 || len(body) != 0 {
			t.Fatalf("If-None-Match %s: %d", inm, r.StatusCode)
		}
	}
	if r, _ := e.do(t, "GET", "/v1/fusion-sets/bank-prod/crl.pem", "", "", "If-None-Match", `"other"`); r.StatusCode != 200 {
		t.Fatalf("a stale ETag: %d", r.StatusCode)
	}
	for _, set := range []string{"no-such-set", "Bad_Set", "a..b"} {
		if r, body := e.do(t, "GET", "/v1/fusion-sets/"+set+"/crl.pem", "", ""); r.StatusCode != 404 || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("CRL of %s: %d %s", set, r.StatusCode, body)
		}
	}
	// Not due yet: nothing re-signed. Past half its validity: re-signed
	// with the next number, once.
	if err := e.api.RefreshCRLs(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again, _ := crlFetch(t, e); again.Number.Int64() != 1 {
		t.Fatalf("a fresh CRL was re-signed: %d", again.Number)
	}
	e.clock.Add(pki.DefaultCRLValidity/2 + time.Minute)
	for range 2 {
		if err := e.api.RefreshCRLs(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	later, r := crlFetch(t, e)
	if later.Number.Int64() != 2 || r.Header.Get("ETag") == etag || !later.NextUpdate.After(crl.NextUpdate) {
		t.Fatalf("refreshed CRL: number %d, next update %s", later.Number, later.NextUpdate)
	}
}
