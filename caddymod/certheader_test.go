package caddymod

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestCertHeaderTrust: the certificate header is believed from the trusted
// proxy only. From anyone else it is removed before the upstream sees it and
// the request is SPOOFED_CERT_HEADER: blocked in defense, reported in
// detection.
func TestCertHeaderTrust(t *testing.T) {
	for _, mode := range []threat.Mode{threat.ModeDefense, threat.ModeDetection} {
		for _, format := range []string{CertHeaderXFCC, CertHeaderPEM} {
			t.Run(string(mode)+"_"+format, func(t *testing.T) {
				testCertHeaderTrust(t, mode, format)
			})
		}
	}
}

func testCertHeaderTrust(t *testing.T, mode threat.Mode, format string) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := corp.WriteSetFile(t, "sets.yaml", func(sc *fusion.SetConfig) { sc.Mode = string(mode) })
	header := "X-Client-Cert"
	cfg := globalOptions() + trustedProxiesOption + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf(`	fusion_set %s {
		cert_header %s %s
	}
	reverse_proxy %s`, corp.SetID, header, format, up.addr()))
	loadCaddyfile(t, cfg)

	valid := corp.Case(t, "valid")
	var value string
	if format == CertHeaderXFCC {
		value = xfccValue(valid.Chain)
	} else {
		value = url.PathEscape(certPEM(valid.Chain[0]))
	}
	accept := "Accept: application/json"

	// From the trusted proxy, without any TLS client certificate of its
	// own: the header is the client's certificate.
	r := newClient(t, srv, nil, proxyIP).mustGet(t, "/", accept, "X-Test-Id: trusted", header+": "+value, "X-Forwarded-For: "+forwardedIP)
	if r.status != http.StatusOK {
		t.Fatalf("trusted proxy: %d %q, want 200", r.status, r.body)
	}
	if h, _ := up.headers("trusted"); h.Get(header) != value {
		t.Errorf("trusted proxy: upstream got %s %q, want it passed on", header, h.Get(header))
	}

	// The same header from an untrusted client, even one with a valid TLS
	// certificate of its own.
	tlsCert := valid.TLSCertificate()
	r = newClient(t, srv, &tlsCert, directIP).mustGet(t, "/", accept, "X-Test-Id: spoofed", header+": "+value, "X-Forwarded-For: "+forwardedIP)
	switch mode {
	case threat.ModeDefense:
		if r.status != http.StatusForbidden || blockReason(r) != string(threat.ReasonSpoofedCertHeader) {
			t.Fatalf("spoofed header in defense: %d %q, want 403 SPOOFED_CERT_HEADER", r.status, r.body)
		}
		if _, ok := up.headers("spoofed"); ok {
			t.Fatal("spoofed header in defense: the upstream got the request")
		}
	case threat.ModeDetection:
		if r.status != http.StatusOK {
			t.Fatalf("spoofed header in detection: %d %q, want 200", r.status, r.body)
		}
		h, _ := up.headers("spoofed")
		if v := h.Values(header); len(v) != 0 {
			t.Errorf("spoofed header reached the upstream: %q", v)
		}
		if got := h.Get(fusion.HeaderReason); got != string(threat.ReasonSpoofedCertHeader) {
			t.Errorf("upstream reason %q, want SPOOFED_CERT_HEADER", got)
		}
	}
	evs := waitEvents(t, sink, 1)
	if len(evs) != 1 || evs[0].ReasonCode != threat.ReasonSpoofedCertHeader || evs[0].ClientIP != directIP {
		t.Fatalf("events %+v, want one SPOOFED_CERT_HEADER from %s", evs, directIP)
	}
	if evs[0].ReasonData["header"] != header {
		t.Errorf("event reasonData %v, want the header name", evs[0].ReasonData)
	}

	// A trusted proxy forwarding a certificate that is no good: judged on
	// that certificate.
	revoked := corp.Case(t, "revoked_serial")
	revokedValue := url.PathEscape(certPEM(revoked.Chain[0]))
	if format == CertHeaderXFCC {
		revokedValue = xfccValue(revoked.Chain)
	}
	r = newClient(t, srv, nil, proxyIP).mustGet(t, "/", accept, "X-Test-Id: revoked", header+": "+revokedValue)
	if mode == threat.ModeDefense && blockReason(r) != string(threat.ReasonCertRevoked) {
		t.Fatalf("revoked via trusted proxy: %d %q, want CERT_REVOKED", r.status, r.body)
	}
	if mode == threat.ModeDetection {
		if h, _ := up.headers("revoked"); h.Get(fusion.HeaderReason) != string(threat.ReasonCertRevoked) {
			t.Fatalf("revoked via trusted proxy: upstream reason %q", h.Get(fusion.HeaderReason))
		}
	}
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
	tests := []struct {
		name    string
		values  []string
		want    [][]byte
		wantErr string
	}{
		{name: "cert only", values: []string{`Hash=ab;Cert="` + enc(leaf) + `";Subject="CN=a,O=b;c"`}, want: [][]byte{leaf}},
		{name: "chain preferred", values: []string{`Cert="` + enc(via[0]) + `";Chain="` + enc(via...) + `"`}, want: via},
		{name: "unquoted", values: []string{`By=spiffe://x;Cert=` + enc(leaf)}, want: [][]byte{leaf}},
		{name: "last element wins", values: []string{`Cert="` + enc(via[0]) + `",By=spiffe://near;Cert="` + enc(leaf) + `"`}, want: [][]byte{leaf}},
		{name: "last header line wins", values: []string{`Cert="` + enc(via[0]) + `"`, `Cert="` + enc(leaf) + `"`}, want: [][]byte{leaf}},
		{name: "escaped quote", values: []string{`Subject="CN=\"q\"";Cert="` + enc(leaf) + `"`}, want: [][]byte{leaf}},
		{name: "no cert", values: []string{`By=spiffe://x;Hash=00`}, wantErr: "no Cert or Chain"},
		{name: "unterminated", values: []string{`Cert="abc`}, wantErr: "unterminated"},
		{name: "key without value", values: []string{`Cert`}, wantErr: "without a value"},
		{name: "not pem", values: []string{`Cert="hello"`}, wantErr: "no PEM certificate"},
		{name: "bad base64", values: []string{`Cert="` + url.PathEscape("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n") + `"`}, wantErr: "invalid base64"},
		{name: "bad escape", values: []string{`Cert="%zz"`}, wantErr: "URL-decoding"},
		{name: "too long", values: []string{strings.Repeat("a", maxCertHeader+1)}, wantErr: "longer than"},
		{name: "empty", values: []string{""}, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseXFCC(tt.values)
			checkChain(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func TestParsePEMHeader(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	via := corp.Case(t, "valid_via_intermediate").Chain
	pemChain := certPEM(via[0]) + certPEM(via[1])
	tests := []struct {
		name    string
		values  []string
		want    [][]byte
		wantErr string
	}{
		{name: "url-encoded", values: []string{url.PathEscape(pemChain)}, want: via},
		// ALB style: only line breaks escaped, base64 '+' and '/' literal.
		{name: "literal plus kept", values: []string{strings.ReplaceAll(pemChain, "\n", "%0A")}, want: via},
		{name: "spaces for newlines", values: []string{strings.ReplaceAll(pemChain, "\n", " ")}, want: via},
		{name: "tabs for newlines", values: []string{strings.ReplaceAll(certPEM(via[0]), "\n", "\t")}, want: via[:1]},
		{name: "missing end", values: []string{"-----BEGIN CERTIFICATE-----\nAAAA"}, wantErr: "without an END"},
		{name: "nothing", values: []string{"hello"}, wantErr: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePEMHeader(tt.values)
			checkChain(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func checkChain(t *testing.T, got [][]byte, err error, want [][]byte, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
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
