package parity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// kitStatus and kitMessage are the set's own block response, so that a
// default cannot make the gateways agree by accident.
const (
	kitStatus  = 451
	kitMessage = "Please update the Bank app (kit)."
)

// kitCaddy loads a Caddy whose plain-HTTP site trusts 127.0.0.1 as a proxy
// (with room for headers over the kit's cap, so that the cap is what refuses
// them) and reads the client certificate from a header: /xfcc/ from
// X-Forwarded-Client-Cert (xfcc), /pem/ from X-Client-Cert (pem), and
// /direct/ from nothing (no certificate: a block to compare).
func kitCaddy(t *testing.T, setFile, upstream string) {
	t.Helper()
	cfg := fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	persist_config off
	log default {
		level ERROR
	}
	servers {
		trusted_proxies static 127.0.0.1/32
		max_header_size 1MB
	}
	mcc {
		fusion_sets %s
		sink file %s
		node parity
	}
}
http://%s:%d {
	handle /xfcc/* {
		fusion_set bank-prod {
			cert_header X-Forwarded-Client-Cert xfcc
		}
		reverse_proxy %s
	}
	handle /pem/* {
		fusion_set bank-prod {
			cert_header X-Client-Cert pem
		}
		reverse_proxy %s
	}
	handle {
		fusion_set bank-prod
		reverse_proxy %s
	}
}
`, adminPort, httpPort, httpsPort, setFile, filepath.Join(t.TempDir(), "events.jsonl"),
		siteHost, httpPort, upstream, upstream, upstream)
	caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: timeout, TestRequestTimeout: timeout,
	}).InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.Fatalf("loading the Caddyfile failed:\n%s", cfg)
	}
}

// kitSetup writes a fusion set file in defense mode with its own block
// status and message, and loads kitCaddy on it in front of an upstream that
// reports the reason it was told.
func kitSetup(t *testing.T, name string) (*fusiontest.Corpus, string) {
	t.Helper()
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream reason="+r.Header.Get(fusion.HeaderReason))
	}))
	t.Cleanup(up.Close)
	file := corpus.WriteSetFile(t, name, func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDefense), true
		sc.Status, sc.Message = kitStatus, kitMessage
	})
	kitCaddy(t, file, strings.TrimPrefix(up.URL, "http://"))
	return corpus, file
}

// kitResponse is what a client sees of a gateway's answer.
type kitResponse struct {
	status int
	header http.Header // the block response's headers, canonical names
	body   []byte
}

// kitCaddyDo sends a request from 127.0.0.1 (a trusted proxy) to Caddy.
func kitCaddyDo(t *testing.T, path string, header http.Header) kitResponse {
	t.Helper()
	dialer := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)))
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d%s", siteHost, httpPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		t.Fatalf("Caddy %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for _, name := range []string{"Content-Type", "Cache-Control", "X-Content-Type-Options", adapter.HeaderExternalID} {
		if v := resp.Header.Values(name); len(v) > 0 {
			h[http.CanonicalHeaderKey(name)] = v
		}
	}
	return kitResponse{status: resp.StatusCode, header: h, body: b}
}

// kitEnvoyDo sends the request to Check and turns a deny into what Envoy
// sends the client; an allow is status 200 with the upstream's reason.
func kitEnvoyDo(t *testing.T, client authv3.AuthorizationClient, c envoytest.Check) kitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.FusionSet, c.SourceAddr, c.DestAddr = "bank-prod", "127.0.0.1:45000", "127.0.0.1:"+strconv.Itoa(httpPort)
	c.Host, c.Method = siteHost, http.MethodGet
	resp, err := client.Check(ctx, envoytest.CheckRequest(c))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		reason := ""
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if strings.EqualFold(h.GetHeader().GetKey(), fusion.HeaderReason) {
				reason = h.GetHeader().GetValue()
			}
		}
		return kitResponse{status: http.StatusOK, body: []byte("upstream reason=" + reason)}
	}
	d := resp.GetDeniedResponse()
	h := http.Header{}
	for _, hv := range d.GetHeaders() {
		h.Add(hv.GetHeader().GetKey(), hv.GetHeader().GetValue())
	}
	return kitResponse{status: int(d.GetStatus().GetCode()), header: h, body: []byte(d.GetBody())}
}

// sameModuloReference compares two responses byte for byte, after each
// one's reference (X-Mcc-External-Id, which each gateway draws from its own
// request id) is replaced in its body by a placeholder. The reference must
// be present at both or at neither.
func sameModuloReference(t *testing.T, what string, caddy, envoy kitResponse) {
	t.Helper()
	norm := func(r kitResponse) (kitResponse, bool) {
		id := r.header.Get(adapter.HeaderExternalID)
		out := kitResponse{status: r.status, header: r.header.Clone(), body: r.body}
		if id != "" {
			out.header.Set(adapter.HeaderExternalID, "REF")
			out.body = bytes.ReplaceAll(r.body, []byte(id), []byte("REF"))
		}
		return out, id != ""
	}
	c, cRef := norm(caddy)
	e, eRef := norm(envoy)
	if cRef != eRef {
		t.Errorf("%s: external id header at Caddy %v, at Envoy %v", what, cRef, eRef)
	}
	if c.status != e.status || !bytes.Equal(c.body, e.body) || fmt.Sprint(c.header) != fmt.Sprint(e.header) {
		t.Errorf("%s: Caddy %d %v %q, Envoy %d %v %q", what, c.status, c.header, c.body, e.status, e.header, e.body)
	}
}

// TestKitParityBlockResponse: the same blocked request gets the same status,
// headers and body (JSON or text by Accept) from Caddy and from Check.
func TestKitParityBlockResponse(t *testing.T) {
	_, file := kitSetup(t, "parity-kit-block.yaml")
	check := startAuthz(t, file)

	for accept, wantJSON := range map[string]bool{"": false, "application/json": true, "text/html": false,
		"text/html;q=0.5, application/json": true, "application/json;q=0": false} {
		t.Run("Accept "+accept, func(t *testing.T) {
			h := http.Header{}
			hs := map[string]string{}
			if accept != "" {
				h.Set("Accept", accept)
				hs["accept"] = accept
			}
			caddy := kitCaddyDo(t, "/direct/v1", h)
			envoy := kitEnvoyDo(t, check, envoytest.Check{Path: "/direct/v1", RequestID: "kit-block", Headers: hs})
			if caddy.status != kitStatus {
				t.Errorf("Caddy: %d %q, want the set's %d", caddy.status, caddy.body, kitStatus)
			}
			if got := caddy.header.Get("Content-Type") == adapter.ContentTypeJSON; got != wantJSON {
				t.Errorf("Caddy: Content-Type %q for Accept %q", caddy.header.Get("Content-Type"), accept)
			}
			if wantJSON {
				if v := blockVerdict(t, "Caddy", caddy.status, string(caddy.body)); v.Reason != threat.ReasonNoClientCert {
					t.Errorf("Caddy: %v, want NO_CLIENT_CERT", v)
				}
			}
			if !bytes.Contains(caddy.body, []byte(kitMessage)) || caddy.header.Get(adapter.HeaderExternalID) == "" {
				t.Errorf("Caddy: body %q, header %v: want the set's message and a reference", caddy.body, caddy.header)
			}
			if envoy.header.Get(adapter.HeaderExternalID) != "kit-block" {
				t.Errorf("Envoy: reference %q, want the request id", envoy.header.Get(adapter.HeaderExternalID))
			}
			sameModuloReference(t, "Accept "+accept, caddy, envoy)
		})
	}

	// Two Accept lines: Envoy joins repeated headers with "," before
	// ext_authz sees them, so Caddy must read all the lines, not the first.
	t.Run("two Accept lines", func(t *testing.T) {
		h := http.Header{}
		h.Add("Accept", "text/html;q=0.5")
		h.Add("Accept", "application/json")
		caddy := kitCaddyDo(t, "/direct/v1", h)
		envoy := kitEnvoyDo(t, check, envoytest.Check{Path: "/direct/v1", RequestID: "kit-block",
			Headers: map[string]string{"accept": "text/html;q=0.5,application/json"}})
		if got := caddy.header.Get("Content-Type"); got != adapter.ContentTypeJSON {
			t.Errorf("Caddy: Content-Type %q, want JSON (the second Accept line prefers it)", got)
		}
		sameModuloReference(t, "two Accept lines", caddy, envoy)
	})
}

// TestKitParityCertHeader: the same forwarded-certificate header, good or
// bad, gets the same verdict at both gateways: XFCC as Caddy reads it from a
// trusted proxy and as Check reads it next to Envoy's leaf, and URL-encoded
// PEM as Caddy's pem cert_header and as attributes.source.certificate.
func TestKitParityCertHeader(t *testing.T) {
	corpus, file := kitSetup(t, "parity-kit-header.yaml")
	check := startAuthz(t, file)

	via := corpus.Case(t, "valid_via_intermediate").Chain
	revoked := corpus.Case(t, "revoked_serial").Chain
	good := envoytest.XFCC(via)
	chainOnly := `Chain="` + url.PathEscape(string(pemOf(via[0]))+string(pemOf(via[1]))) + `"`
	xfccCases := []struct {
		name, value string
		want        threat.Reason
	}{
		{"Envoy's XFCC", good, threat.ReasonNone},
		{"Chain only, path-escaped", chainOnly, threat.ReasonNone},
		{"lower-case hex", strings.ReplaceAll(good, "%2F", "%2f"), threat.ReasonNone},
		{"revoked leaf", envoytest.XFCC(revoked), threat.ReasonCertRevoked},
		{"two elements", good + "," + good, threat.ReasonSpoofedCertHeader},
		{"escape no proxy writes", strings.Replace(good, `Chain="-----BEGIN%20CERTIFICATE-----%0A`, `Chain="-----BEGIN%20CERTIFICATE-----%0A%41`, 1), threat.ReasonCertMalformed},
		{"cut-short escape", strings.Replace(good, `Chain="`, `Chain="%`, 1), threat.ReasonCertMalformed},
		{"unterminated quote", strings.TrimSuffix(chainOnly, `"`), threat.ReasonCertMalformed},
		{"bad base64", `Chain="-----BEGIN%20CERTIFICATE-----%0AA===%0A-----END%20CERTIFICATE-----%0A"`, threat.ReasonCertMalformed},
		{"over the size cap", `Chain="` + strings.Repeat("A", adapter.DefaultMaxCertHeaderBytes) + `"`, threat.ReasonCertMalformed},
	}
	for _, c := range xfccCases {
		h := http.Header{"X-Forwarded-Client-Cert": {c.value}, "Accept": {"application/json"}}
		caddy := kitCaddyDo(t, "/xfcc/v1", h)
		envoy := kitEnvoyDo(t, check, envoytest.Check{LeafDER: leafOf(c.value, via, revoked), Path: "/xfcc/v1", RequestID: "kit-xfcc",
			Headers: map[string]string{"x-forwarded-client-cert": c.value, "accept": "application/json"}})
		kitCompareVerdicts(t, "XFCC "+c.name, caddy, envoy, c.want)
	}

	pemCases := []struct {
		name, value string
		want        threat.Reason
	}{
		{"Envoy-encoded leaf", envoytest.EncodePeerCertificate(revoked[0]), threat.ReasonCertRevoked},
		{"lower-case hex", strings.ReplaceAll(envoytest.EncodePeerCertificate(revoked[0]), "%2F", "%2f"), threat.ReasonCertRevoked},
		{"escape no proxy writes", strings.Replace(envoytest.EncodePeerCertificate(revoked[0]), "%0A", "%0A%41", 1), threat.ReasonCertMalformed},
		{"not PEM", "hello%20world", threat.ReasonCertMalformed},
	}
	for _, c := range pemCases {
		caddy := kitCaddyDo(t, "/pem/v1", http.Header{"X-Client-Cert": {c.value}, "Accept": {"application/json"}})
		envoy := kitEnvoyDo(t, check, envoytest.Check{Certificate: c.value, Path: "/pem/v1", RequestID: "kit-pem",
			Headers: map[string]string{"accept": "application/json"}})
		kitCompareVerdicts(t, "PEM "+c.name, caddy, envoy, c.want)
	}
}

// leafOf is the leaf Envoy would have seen on the connection for an XFCC
// case: the revoked chain's for the revoked case, else the valid one's.
func leafOf(value string, via, revoked [][]byte) []byte {
	if strings.Contains(value, envoytest.EncodePeerCertificate(revoked[0])) {
		return revoked[0]
	}
	return via[0]
}

// kitCompareVerdicts checks both answers against want (ReasonNone: allowed
// with no finding) and against each other, block pages byte for byte.
func kitCompareVerdicts(t *testing.T, what string, caddy, envoy kitResponse, want threat.Reason) {
	t.Helper()
	if want == threat.ReasonNone {
		for gw, r := range map[string]kitResponse{"Caddy": caddy, "Envoy": envoy} {
			if r.status != http.StatusOK || string(r.body) != "upstream reason=" {
				t.Errorf("%s: %s %d %q, want allowed", what, gw, r.status, r.body)
			}
		}
		return
	}
	for gw, r := range map[string]kitResponse{"Caddy": caddy, "Envoy": envoy} {
		if v := blockVerdict(t, what+" ("+gw+")", r.status, string(r.body)); v.Reason != want || v.Status != kitStatus {
			t.Errorf("%s: %s %v, want block %d %s", what, gw, v, kitStatus, want)
		}
	}
	sameModuloReference(t, what, caddy, envoy)
}
