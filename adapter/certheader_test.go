package adapter

import (
	"bytes"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestParseXFCC(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	leaf := corp.Case(t, "valid").Chain[0]
	via := corp.Case(t, "valid_via_intermediate").Chain
	enc := func(ders ...[]byte) string {
		var b strings.Builder
		for _, d := range ders {
			b.WriteString(certPEM(d))
		}
		return url.PathEscape(b.String())
	}
	two := `Cert="` + enc(via[0]) + `",By=spiffe://near;Cert="` + enc(leaf) + `"`
	multi := CertHeaderOptions{AllowMultipleElements: true}
	tests := []struct {
		name       string
		values     []string
		opts       CertHeaderOptions
		want       [][]byte
		wantReason threat.Reason
		wantErr    string
	}{
		{name: "cert only", values: []string{`Hash=ab;Cert="` + enc(leaf) + `";Subject="CN=a,O=b;c"`}, want: [][]byte{leaf}},
		{name: "chain preferred", values: []string{`Cert="` + enc(via[0]) + `";Chain="` + enc(via...) + `"`}, want: via},
		{name: "unquoted", values: []string{`By=spiffe://x;Cert=` + enc(leaf)}, want: [][]byte{leaf}},
		{name: "escaped quote", values: []string{`Subject="CN=\"q\"";Cert="` + enc(leaf) + `"`}, want: [][]byte{leaf}},
		{name: "two elements refused", values: []string{two}, wantReason: threat.ReasonSpoofedCertHeader, wantErr: "2 XFCC elements"},
		{name: "two elements allowed: right-most", values: []string{two}, opts: multi, want: [][]byte{leaf}},
		{name: "two header lines refused", values: []string{`Cert="` + enc(via[0]) + `"`, `Cert="` + enc(leaf) + `"`}, wantReason: threat.ReasonSpoofedCertHeader, wantErr: "sent 2 times"},
		{name: "two header lines refused even with multiple elements", values: []string{`Cert="` + enc(via[0]) + `"`, `Cert="` + enc(leaf) + `"`}, opts: multi, wantReason: threat.ReasonSpoofedCertHeader},
		{name: "no cert", values: []string{`By=spiffe://x;Hash=00`}, wantReason: threat.ReasonCertMalformed, wantErr: "no Cert or Chain"},
		{name: "unterminated", values: []string{`Cert="abc`}, wantReason: threat.ReasonCertMalformed, wantErr: "unterminated"},
		{name: "key without value", values: []string{`Cert`}, wantReason: threat.ReasonCertMalformed, wantErr: "without a value"},
		{name: "not pem", values: []string{`Cert="hello"`}, wantReason: threat.ReasonCertMalformed, wantErr: "no PEM certificate"},
		{name: "bad base64", values: []string{`Cert="` + url.PathEscape("-----BEGIN CERTIFICATE-----\nA===\n-----END CERTIFICATE-----\n") + `"`}, wantReason: threat.ReasonCertMalformed, wantErr: "invalid base64"},
		{name: "bad escape", values: []string{`Cert="%zz"`}, wantReason: threat.ReasonCertMalformed, wantErr: "URL-decoding"},
		// The one URL rule: only the five escapes proxies write for PEM.
		{name: "foreign escape", values: []string{`Cert="` + strings.Replace(enc(leaf), "%0A", "%0A%41", 1) + `"`}, wantReason: threat.ReasonCertMalformed, wantErr: "URL escape other than the five"},
		{name: "lower-case hex", values: []string{`Cert="` + strings.ReplaceAll(enc(leaf), "%2F", "%2f") + `"`}, want: [][]byte{leaf}},
		{name: "escape cut short", values: []string{`Cert="` + enc(leaf) + `%0"`}, wantReason: threat.ReasonCertMalformed, wantErr: "URL escape other than the five"},
		{name: "too long", values: []string{strings.Repeat("a", DefaultMaxCertHeaderBytes+1)}, wantReason: threat.ReasonCertMalformed, wantErr: "longer than 65536"},
		{name: "two long lines", values: []string{strings.Repeat("a", DefaultMaxCertHeaderBytes+1), "a"}, wantReason: threat.ReasonSpoofedCertHeader, wantErr: "sent 2 times"},
		{name: "own cap", values: []string{`Cert="` + enc(leaf) + `"`}, opts: CertHeaderOptions{MaxBytes: 100}, wantReason: threat.ReasonCertMalformed, wantErr: "longer than 100"},
		{name: "empty", values: []string{""}, wantReason: threat.ReasonCertMalformed, wantErr: "empty"},
		{name: "no value", values: nil, wantReason: threat.ReasonCertMalformed, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseXFCC(tt.values, tt.opts)
			checkChain(t, got, err, tt.want, tt.wantReason, tt.wantErr)
		})
	}
}

func TestParsePEMHeader(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	via := corp.Case(t, "valid_via_intermediate").Chain
	pemChain := certPEM(via[0]) + certPEM(via[1])
	tests := []struct {
		name       string
		values     []string
		want       [][]byte
		wantReason threat.Reason
		wantErr    string
	}{
		{name: "url-encoded", values: []string{url.PathEscape(pemChain)}, want: via},
		// ALB style: only line breaks escaped, base64 '+' and '/' literal.
		{name: "literal plus kept", values: []string{strings.ReplaceAll(pemChain, "\n", "%0A")}, want: via},
		{name: "spaces for newlines", values: []string{strings.ReplaceAll(pemChain, "\n", " ")}, want: via},
		{name: "tabs for newlines", values: []string{strings.ReplaceAll(certPEM(via[0]), "\n", "\t")}, want: via[:1]},
		{name: "two lines refused", values: []string{url.PathEscape(certPEM(via[1])), url.PathEscape(certPEM(via[0]))}, wantReason: threat.ReasonSpoofedCertHeader, wantErr: "sent 2 times"},
		{name: "missing end", values: []string{"-----BEGIN CERTIFICATE-----\nAAAA"}, wantReason: threat.ReasonCertMalformed, wantErr: "without an END"},
		{name: "nothing", values: []string{"hello"}, wantReason: threat.ReasonCertMalformed, wantErr: "no PEM certificate"},
		{name: "foreign escape", values: []string{strings.Replace(url.PathEscape(pemChain), "%0A", "%0A%25", 1)}, wantReason: threat.ReasonCertMalformed, wantErr: "URL escape other than the five"},
		{name: "too long", values: []string{strings.Repeat("%41", DefaultMaxCertHeaderBytes)}, wantReason: threat.ReasonCertMalformed, wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePEMHeader(tt.values, CertHeaderOptions{})
			checkChain(t, got, err, tt.want, tt.wantReason, tt.wantErr)
		})
	}
}

func checkChain(t *testing.T, got [][]byte, err error, want [][]byte, wantReason threat.Reason, wantErr string) {
	t.Helper()
	if wantReason != "" {
		var ce *CertHeaderError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v (%T), want a *CertHeaderError", err, err)
		}
		if ce.Reason != wantReason {
			t.Fatalf("reason %s, want %s (err %v)", ce.Reason, wantReason, err)
		}
		if !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want it to contain %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("certificate %d differs", i)
		}
	}
}
