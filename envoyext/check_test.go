package envoyext

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/schematest"
	"github.com/mccgate/mcc/threat"
)

// testMode is one of the three Threat-Event modes of docs/ARCHITECTURE.md ("Modes").
type testMode struct {
	name   string
	mode   threat.Mode
	events bool
}

var testModes = []testMode{
	{"defense events off", threat.ModeDefense, false},
	{"detection events on", threat.ModeDetection, true},
	{"defense events on", threat.ModeDefense, true},
}

func modeYAML(caFile string, m testMode) string {
	return fmt.Sprintf(`fusion_sets:
  - id: bank
    trusted_ca: {file: %q}
    app_id: bank-app
    mode: %s
    threat_events: %v
    status: 451
    message: "Please update the Bank app."
    device_headers: {deviceID: X-Device-Id, osVersion: X-OS-Version}
`, caFile, m.mode, m.events)
}

func statusCode(r *authv3.CheckResponse) codes.Code { return codes.Code(r.GetStatus().GetCode()) }

// okHeaders returns the upstream headers an OK response sets.
func okHeaders(r *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range r.GetOkResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

func deniedHeaders(r *authv3.CheckResponse) map[string]string {
	out := map[string]string{}
	for _, h := range r.GetDeniedResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

// upstreamEvent decodes the event passed upstream in detection mode.
func upstreamEvent(t *testing.T, r *authv3.CheckResponse) *threat.Event {
	t.Helper()
	v := okHeaders(r)[strings.ToLower(fusion.HeaderEvent)]
	if v == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		t.Fatalf("event header is not base64url: %v", err)
	}
	if err := schematest.ValidateEventJSON(b); err != nil {
		t.Fatalf("upstream event fails the schema: %v", err)
	}
	e := new(threat.Event)
	if err := e.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	return e
}

func removes(r *authv3.CheckResponse, header string) bool {
	for _, h := range r.GetOkResponse().GetHeadersToRemove() {
		if h == header {
			return true
		}
	}
	return false
}

// Missing and unknown fusion set ids are denied with CONFIG_ERROR, never
// allowed, in every mode.
func TestCheckUnknownFusionSetDenies(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	for _, m := range testModes {
		t.Run(m.name, func(t *testing.T) {
			h := startHarness(t, p.loadConfig(t, modeYAML(p.caFile(), m)), nil)
			for _, set := range []string{"", "no-such-set"} {
				resp := h.check(envoytest.CheckRequest(envoytest.Check{
					FusionSet: set, LeafDER: p.good.Raw, SourceAddr: "198.51.100.1:1000",
					Host: "api.bank.example", Method: "GET", Path: "/", RequestID: "cfg-" + set,
					Headers: map[string]string{"accept": "application/json"},
				}))
				if statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(threat.ReasonConfigError) {
					t.Fatalf("set %q: got %v, want PERMISSION_DENIED CONFIG_ERROR", set, resp.GetStatus())
				}
				if c := resp.GetDeniedResponse().GetStatus().GetCode(); int(c) != fusion.DefaultStatus {
					t.Fatalf("set %q: HTTP status %d", set, c)
				}
				var body map[string]string
				if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil {
					t.Fatalf("body is not JSON: %v", err)
				}
				if body["reasonCode"] != string(threat.ReasonConfigError) || body["externalID"] != "cfg-"+set {
					t.Fatalf("body %v", body)
				}
				if deniedHeaders(resp)[HeaderExternalID] != "cfg-"+set {
					t.Fatalf("x-mcc-external-id = %q", deniedHeaders(resp)[HeaderExternalID])
				}
			}
			// An empty request (no attributes at all) is the same deny.
			if resp := h.check(&authv3.CheckRequest{}); statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(threat.ReasonConfigError) {
				t.Fatalf("empty request: got %v", resp.GetStatus())
			}
			if m := h.metrics(); !hasMetric(m, `mcc_authz_decisions_total{action="block",fusion_set="_unknown",reason="CONFIG_ERROR"}`, "3") {
				t.Fatalf("CONFIG_ERROR decisions not counted under _unknown")
			}
		})
	}
}

// A certificate field Envoy's encoder could not have written is a clean
// CERT_MALFORMED decision: blocked in defense, reported in detection.
func TestCheckGarbageCertificate(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	good := envoytest.EncodePeerCertificate(p.good.Raw)
	garbage := map[string]string{
		"not pem":        "hello%20world",
		"foreign escape": strings.Replace(good, "%2F", "%41", 1),
		"bad der":        envoytest.EncodePeerCertificate([]byte("\x30\x03\x02\x01\x00 not a certificate")),
		"control chars":  "\u0001\u00ff-----BEGIN%20CERTIFICATE-----%0A\u0000",
	}
	for _, m := range testModes {
		t.Run(m.name, func(t *testing.T) {
			h := startHarness(t, p.loadConfig(t, modeYAML(p.caFile(), m)), nil)
			ids := map[string]bool{}
			for name, cert := range garbage {
				id := "garbage-" + strings.ReplaceAll(name, " ", "-")
				ids[id] = true
				resp := h.check(envoytest.CheckRequest(envoytest.Check{
					FusionSet: "bank", Certificate: cert, SourceAddr: "198.51.100.2:1000",
					Host: "api.bank.example", Method: "GET", Path: "/", RequestID: id,
				}))
				if m.mode == threat.ModeDefense {
					if statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(threat.ReasonCertMalformed) {
						t.Fatalf("%s: got %v, want deny CERT_MALFORMED", name, resp.GetStatus())
					}
					if c := resp.GetDeniedResponse().GetStatus().GetCode(); c != 451 {
						t.Fatalf("%s: HTTP status %d, want the set's 451", name, c)
					}
					if body := resp.GetDeniedResponse().GetBody(); body != "Please update the Bank app.\nreference: "+id+"\n" {
						t.Fatalf("%s: text body %q", name, body)
					}
					continue
				}
				if statusCode(resp) != codes.OK {
					t.Fatalf("%s: detection must allow, got %v", name, resp.GetStatus())
				}
				ev := upstreamEvent(t, resp)
				if ev == nil || ev.ReasonCode != threat.ReasonCertMalformed || ev.ExternalID != id {
					t.Fatalf("%s: upstream event %+v", name, ev)
				}
			}
			events := h.events()
			if !m.events {
				if len(events) != 0 {
					t.Fatalf("events off, but %d events reached the sink", len(events))
				}
				return
			}
			if len(events) != len(garbage) {
				t.Fatalf("%d events, want %d", len(events), len(garbage))
			}
			for _, e := range events {
				if !ids[e.ExternalID] || e.ReasonCode != threat.ReasonCertMalformed || e.Gateway != threat.GatewayEnvoy || e.Node != "test-node" {
					t.Errorf("event %s %s %s %s", e.ExternalID, e.ReasonCode, e.Gateway, e.Node)
				}
				if data, _ := json.Marshal(e); strings.Contains(string(data), "BEGIN") || strings.Contains(string(data), "%0A") {
					t.Errorf("event echoes certificate text: %s", data)
				}
			}
		})
	}
}

// Everything Check reads from an Envoy request ends up where it belongs:
// client IP (with trusted proxies), SNI, host, method, path without query,
// device headers, request id; and client-sent mcc headers never reach the
// upstream.
func TestCheckRequestMapping(t *testing.T) {
	p := newTestPKI(t, "bank", "bank-app")
	cfg := p.loadConfig(t, modeYAML(p.caFile(), testModes[1])) // detection, events on
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, cfg, func(o *Options) { o.TrustedProxies = proxies })

	// No certificate: reported in detection, with the context mapped.
	resp := h.check(envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", SourceAddr: "10.1.2.3:5555", DestAddr: "192.0.2.1:443",
		SNI: "api.bank.example", Host: "api.bank.example", Method: "POST", Path: "/trans%66er?amount=1&token=s3cret",
		RequestID: "map-1",
		Headers: map[string]string{
			"X-Forwarded-For":  "6.6.6.6, 203.0.113.50, 10.9.9.9",
			"x-device-id":      "device-42",
			"X-OS-Version":     "iOS 19.1",
			"mcc-threat-event": "forged",
			"mcc-reason-code":  "forged",
		},
	}))
	if statusCode(resp) != codes.OK {
		t.Fatalf("detection must allow, got %v", resp.GetStatus())
	}
	ev := upstreamEvent(t, resp)
	if ev == nil {
		t.Fatal("no upstream event")
	}
	checks := map[string][2]string{
		"reasonCode": {string(ev.ReasonCode), string(threat.ReasonNoClientCert)},
		"clientIP":   {ev.ClientIP, "203.0.113.50"},
		"sni":        {ev.SNI, "api.bank.example"},
		"host":       {ev.Host, "api.bank.example"},
		"method":     {ev.Method, "POST"},
		"path":       {ev.Path, "/transfer"},
		"externalID": {ev.ExternalID, "map-1"},
		"deviceID":   {ev.Device["deviceID"], "device-42"},
		"osVersion":  {ev.Device["osVersion"], "iOS 19.1"},
		"gateway":    {ev.Gateway, threat.GatewayEnvoy},
		"mode":       {string(ev.Mode), string(threat.ModeDetection)},
		"action":     {string(ev.Action), string(threat.ActionReported)},
	}
	for k, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", k, v[0], v[1])
		}
	}
	hdrs := okHeaders(resp)
	if hdrs["mcc-reason-code"] != string(threat.ReasonNoClientCert) || hdrs["mcc-fusion-set"] != "bank" {
		t.Errorf("upstream headers %v", hdrs)
	}
	for _, opt := range resp.GetOkResponse().GetHeaders() {
		if opt.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
			t.Errorf("header %s must overwrite a client-sent copy, action %v", opt.GetHeader().GetKey(), opt.GetAppendAction())
		}
	}

	// A good certificate: OK, and client-sent mcc headers are removed.
	resp = h.check(envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", LeafDER: p.good.Raw, SourceAddr: "198.51.100.9:5555",
		Host: "api.bank.example", Method: "GET", Path: "/", RequestID: "map-2",
		Headers: map[string]string{"mcc-threat-event": "forged", "mcc-reason-code": "forged", "mcc-fusion-set": "forged"},
	}))
	if statusCode(resp) != codes.OK || len(resp.GetOkResponse().GetHeaders()) != 0 {
		t.Fatalf("good certificate: %v, headers %v", resp.GetStatus(), okHeaders(resp))
	}
	for _, name := range []string{"mcc-threat-event", "mcc-reason-code", "mcc-fusion-set"} {
		if !removes(resp, name) {
			t.Errorf("client-sent %s is not removed", name)
		}
	}

	// An untrusted source's X-Forwarded-For is not believed.
	resp = h.check(envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", SourceAddr: "198.51.100.10:5555", Host: "h", Method: "GET", Path: "/", RequestID: "map-3",
		Headers: map[string]string{"x-forwarded-for": "203.0.113.99"},
	}))
	if ev := upstreamEvent(t, resp); ev == nil || ev.ClientIP != "198.51.100.10" {
		t.Fatalf("untrusted source: event %+v", ev)
	}
}

// With encode_raw_headers Envoy fills header_map instead of headers.
func TestHeaderValueRawHeaders(t *testing.T) {
	h := &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-request-id", RawValue: []byte("raw-1")},
		{Key: "accept", Value: "application/json"},
	}}}
	if got := headerValue(h, "x-request-id"); got != "raw-1" {
		t.Errorf("raw value: %q", got)
	}
	if got := headerValue(h, "accept"); got != "application/json" {
		t.Errorf("value: %q", got)
	}
	if got := headerValue(h, "missing"); got != "" {
		t.Errorf("missing: %q", got)
	}
	if got := headerValue(nil, "accept"); got != "" {
		t.Errorf("nil request: %q", got)
	}
}
