package caddymod

import (
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

// TestCertHeaderRefusals drives the attacks on a forwarded-certificate header
// through a real Caddy, from the trusted proxy: a second header line, a
// second XFCC element (a forged one in front of the proxy's own), and a
// header over the size cap. Each is a clean block with its reason, never a
// 500, and the refused header never reaches the upstream. With
// allow_multiple_elements the right-most element, the one the trusted proxy
// added, is the one judged.
func TestCertHeaderRefusals(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := corp.WriteSetFile(t, "refusals.yaml", func(sc *fusion.SetConfig) { sc.Mode = string(threat.ModeDefense) })
	load := func(xfccOptions, pemOptions string) {
		cfg := globalOptions() + trustedProxiesOption + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf(`	route /xfcc {
		fusion_set %[1]s {
			cert_header X-Forwarded-Client-Cert xfcc {
%[2]s
			}
		}
		reverse_proxy %[4]s
	}
	route /pem {
		fusion_set %[1]s {
			cert_header X-Client-Cert pem {
%[3]s
			}
		}
		reverse_proxy %[4]s
	}`, corp.SetID, xfccOptions, pemOptions, up.addr()))
		loadCaddyfile(t, cfg)
	}
	load("\t\t\t\tmax_size 64KiB", "\t\t\t\tmax_size 512B")

	valid := corp.Case(t, "valid").Chain
	revoked := corp.Case(t, "revoked_serial").Chain
	validXFCC, revokedXFCC := xfccValue(valid), xfccValue(revoked)
	validPEM := url.PathEscape(certPEM(valid[0]))
	if len(validPEM) <= 512 {
		t.Fatalf("the PEM header is %d bytes: the size test needs more than 512 bytes", len(validPEM))
	}
	proxy := newClient(t, srv, nil, proxyIP)
	accept := "Accept: application/json"

	// The proxy's own single element passes.
	if r := proxy.mustGet(t, "/xfcc", accept, "X-Test-Id: one", "X-Forwarded-Client-Cert: "+validXFCC); r.status != http.StatusOK {
		t.Fatalf("one XFCC element: %d %q, want 200", r.status, r.body)
	}
	cases := []struct {
		name, path string
		headers    []string
		want       threat.Reason
	}{
		// A client-supplied line the proxy passed on next to its own.
		{"two xfcc lines", "/xfcc", []string{"X-Forwarded-Client-Cert: " + validXFCC, "X-Forwarded-Client-Cert: " + revokedXFCC}, threat.ReasonSpoofedCertHeader},
		// A forged element in front of the proxy's own: refused, whichever
		// element a reader would have picked.
		{"two xfcc elements", "/xfcc", []string{"X-Forwarded-Client-Cert: " + validXFCC + "," + revokedXFCC}, threat.ReasonSpoofedCertHeader},
		{"two xfcc elements, valid last", "/xfcc", []string{"X-Forwarded-Client-Cert: " + revokedXFCC + "," + validXFCC}, threat.ReasonSpoofedCertHeader},
		// pem used to read the first line: the client's, if it came first.
		{"two pem lines", "/pem", []string{"X-Client-Cert: " + url.PathEscape(certPEM(revoked[0])), "X-Client-Cert: " + url.PathEscape(certPEM(revoked[0]))}, threat.ReasonSpoofedCertHeader},
		{"pem over max_size", "/pem", []string{"X-Client-Cert: " + validPEM}, threat.ReasonCertMalformed},
		{"xfcc unreadable", "/xfcc", []string{`X-Forwarded-Client-Cert: Cert="unterminated`}, threat.ReasonCertMalformed},
	}
	for _, c := range cases {
		id := strings.ReplaceAll(c.name, " ", "-")
		r := proxy.mustGet(t, c.path, append([]string{accept, "X-Test-Id: " + id}, c.headers...)...)
		if r.status != http.StatusForbidden || blockReason(r) != string(c.want) {
			t.Errorf("%s: %d %q, want 403 %s", c.name, r.status, r.body, c.want)
		}
		if _, ok := up.headers(id); ok {
			t.Errorf("%s: the upstream got the request", c.name)
		}
	}

	// With allow_multiple_elements the right-most element is read: the
	// forged one in front changes nothing.
	load("\t\t\t\tallow_multiple_elements", "")
	if r := proxy.mustGet(t, "/xfcc", accept, "X-Test-Id: multi-ok", "X-Forwarded-Client-Cert: "+revokedXFCC+","+validXFCC); r.status != http.StatusOK {
		t.Fatalf("allowed elements, valid right-most: %d %q, want 200", r.status, r.body)
	}
	if r := proxy.mustGet(t, "/xfcc", accept, "X-Test-Id: multi-revoked", "X-Forwarded-Client-Cert: "+validXFCC+","+revokedXFCC); blockReason(r) != string(threat.ReasonCertRevoked) {
		t.Fatalf("allowed elements, revoked right-most: %d %q, want CERT_REVOKED", r.status, r.body)
	}
	// Still one line only.
	if r := proxy.mustGet(t, "/xfcc", accept, "X-Test-Id: multi-lines", "X-Forwarded-Client-Cert: "+revokedXFCC, "X-Forwarded-Client-Cert: "+validXFCC); blockReason(r) != string(threat.ReasonSpoofedCertHeader) {
		t.Fatalf("allowed elements, two lines: %d %q, want SPOOFED_CERT_HEADER", r.status, r.body)
	}
	// The default cap (64 KiB) holds when max_size is not given.
	if r := proxy.mustGet(t, "/pem", accept, "X-Test-Id: pem-default", "X-Client-Cert: "+validPEM); r.status != http.StatusOK {
		t.Fatalf("pem under the default cap: %d %q, want 200", r.status, r.body)
	}
}

// TestCertHeaderRefusalDetection: in detection mode a refused header is
// reported to the upstream and removed, so the upstream cannot act on it.
func TestCertHeaderRefusalDetection(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	sink := filepath.Join(t.TempDir(), "events.jsonl")
	setFile := corp.WriteSetFile(t, "refusals-detect.yaml", func(sc *fusion.SetConfig) { sc.Mode = string(threat.ModeDetection) })
	cfg := globalOptions() + trustedProxiesOption + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf(`	fusion_set %s {
		cert_header X-Forwarded-Client-Cert
	}
	reverse_proxy %s`, corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)
	valid := xfccValue(corp.Case(t, "valid").Chain)
	r := newClient(t, srv, nil, proxyIP).mustGet(t, "/", "X-Test-Id: two", "X-Forwarded-Client-Cert: "+valid+","+valid)
	if r.status != http.StatusOK {
		t.Fatalf("detection: %d %q, want 200", r.status, r.body)
	}
	h, _ := up.headers("two")
	if v := h.Values("X-Forwarded-Client-Cert"); len(v) != 0 {
		t.Errorf("the refused header reached the upstream: %d bytes", len(v[0]))
	}
	if got := h.Get(fusion.HeaderReason); got != string(threat.ReasonSpoofedCertHeader) {
		t.Errorf("upstream reason %q, want SPOOFED_CERT_HEADER", got)
	}
	evs := waitEvents(t, sink, 1)
	if evs[0].ReasonCode != threat.ReasonSpoofedCertHeader || !strings.Contains(fmt.Sprint(evs[0].ReasonData["error"]), "2 XFCC elements") {
		t.Fatalf("event %+v, want SPOOFED_CERT_HEADER naming the elements", evs[0])
	}
}
