package envoyext

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// corpusCheck is the request Envoy builds for a corpus case: the leaf in
// attributes.source.certificate and, with the control plane's XFCC settings,
// the presented chain in x-forwarded-client-cert.
func corpusCheck(c *fusiontest.Corpus, tc fusiontest.Case, i int, withChain bool) *authv3.CheckRequest {
	chk := envoytest.Check{
		FusionSet:  c.SetID,
		SourceAddr: fmt.Sprintf("198.51.100.%d:%d", 10+i, 40000+i),
		DestAddr:   "192.0.2.1:443",
		SNI:        "api.bank.example",
		Host:       "api.bank.example",
		Method:     "GET",
		Path:       "/v1/balance",
		RequestID:  tc.Name,
		Headers: map[string]string{
			"accept":                   "application/json",
			fusiontest.HeaderDeviceID:  "device-" + tc.Name,
			fusiontest.HeaderOSVersion: "Android 16",
			"user-agent":               "BankApp/7.1",
		},
	}
	if withChain {
		chk.Chain = tc.Chain
	} else if len(tc.Chain) > 0 {
		chk.LeafDER = tc.Chain[0]
	}
	return envoytest.CheckRequest(chk)
}

// The whole hostile-certificate corpus through real gRPC Checks, in each of
// the three modes: status code, denied HTTP status and body, upstream
// headers, and the events the file sink wrote.
func TestCheckCorpus(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	for _, m := range testModes {
		t.Run(m.name, func(t *testing.T) {
			path := c.WriteSetFile(t, strings.ReplaceAll(m.name, " ", "-")+".yaml", func(sc *fusion.SetConfig) {
				sc.Mode, sc.ThreatEvents = string(m.mode), m.events
			})
			cfg, err := fusion.LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			set := cfg.Sets[c.SetID]
			h := startHarness(t, cfg, nil)
			failing := map[string]threat.Reason{}
			for i, tc := range c.Cases {
				resp := h.check(corpusCheck(c, tc, i, true))
				// The answer obeys the API's own validation rules (header
				// names, status enum), as Envoy expects it.
				if err := resp.ValidateAll(); err != nil {
					t.Errorf("%s: CheckResponse fails validation: %v", tc.Name, err)
				}
				if tc.Want != threat.ReasonNone {
					failing[tc.Name] = tc.Want
				}
				switch {
				case tc.Want == threat.ReasonNone:
					if statusCode(resp) != codes.OK {
						t.Errorf("%s: want OK, got %v", tc.Name, resp.GetStatus())
						continue
					}
					if len(resp.GetOkResponse().GetHeaders()) != 0 || !removes(resp, "mcc-threat-event") {
						t.Errorf("%s: a good certificate passes nothing upstream and strips mcc headers: %v", tc.Name, resp.GetOkResponse())
					}
				case m.mode == threat.ModeDefense:
					if statusCode(resp) != codes.PermissionDenied || resp.GetStatus().GetMessage() != string(tc.Want) {
						t.Errorf("%s: want PERMISSION_DENIED %s, got %v", tc.Name, tc.Want, resp.GetStatus())
						continue
					}
					denied := resp.GetDeniedResponse()
					if int(denied.GetStatus().GetCode()) != set.Status {
						t.Errorf("%s: HTTP status %d, want %d", tc.Name, denied.GetStatus().GetCode(), set.Status)
					}
					var body map[string]string
					if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil {
						t.Errorf("%s: body is not JSON: %v", tc.Name, err)
						continue
					}
					want := map[string]string{"error": "Forbidden", "message": set.Message, "reasonCode": string(tc.Want), "externalID": tc.Name, "fusionSet": c.SetID}
					if fmt.Sprint(body) != fmt.Sprint(want) {
						t.Errorf("%s: body %v, want %v", tc.Name, body, want)
					}
					hd := deniedHeaders(resp)
					if hd["content-type"] != "application/json" || hd[HeaderExternalID] != tc.Name {
						t.Errorf("%s: denied headers %v", tc.Name, hd)
					}
				default: // detection: allowed, the event goes upstream
					if statusCode(resp) != codes.OK {
						t.Errorf("%s: detection must allow, got %v", tc.Name, resp.GetStatus())
						continue
					}
					hd := okHeaders(resp)
					if hd["mcc-reason-code"] != string(tc.Want) || hd["mcc-fusion-set"] != c.SetID {
						t.Errorf("%s: upstream headers %v", tc.Name, hd)
					}
					ev := upstreamEvent(t, resp)
					if ev == nil || ev.ReasonCode != tc.Want || ev.ExternalID != tc.Name || ev.Action != threat.ActionReported {
						t.Errorf("%s: upstream event %+v", tc.Name, ev)
					}
				}
			}

			events := h.events()
			if !m.events {
				if len(events) != 0 {
					t.Fatalf("events off, yet %d events reached the sink", len(events))
				}
				return
			}
			byID := map[string]*threat.Event{}
			for _, e := range events {
				if byID[e.ExternalID] != nil {
					t.Errorf("two events for %s", e.ExternalID)
				}
				byID[e.ExternalID] = e
			}
			if len(byID) != len(failing) {
				t.Errorf("%d events for %d failing cases", len(byID), len(failing))
			}
			wantAction := threat.ActionBlocked
			if m.mode == threat.ModeDetection {
				wantAction = threat.ActionReported
			}
			for name, want := range failing {
				e := byID[name]
				if e == nil {
					t.Errorf("%s: no event in the sink", name)
					continue
				}
				if e.ReasonCode != want || e.Action != wantAction || e.Mode != m.mode || e.FusionSet != c.SetID ||
					e.Gateway != threat.GatewayEnvoy || e.Node != "test-node" || e.SNI != "api.bank.example" ||
					e.Host != "api.bank.example" || e.Method != "GET" || e.Path != "/v1/balance" ||
					e.Device["deviceID"] != "device-"+name || e.Device["osVersion"] != "Android 16" ||
					!strings.HasPrefix(e.ClientIP, "198.51.100.") {
					t.Errorf("%s: event %+v", name, e)
				}
				if e.CurrentThreatEventScore != set.Score(want) {
					t.Errorf("%s: score %d, want %d", name, e.CurrentThreatEventScore, set.Score(want))
				}
			}
		})
	}
}

// Without the XFCC chain, ext_authz sees only the leaf (Envoy never sends
// the chain in attributes.source.certificate). Exactly the chain cases then
// differ; a set that lists its intermediates restores the intermediate case.
func TestCheckCorpusLeafOnly(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	differ := map[string]threat.Reason{
		"valid_via_intermediate": threat.ReasonCertUntrusted, // the intermediate is unknown
		"chain_too_deep":         threat.ReasonNone,          // the extra certificates are not seen
		"malformed_intermediate": threat.ReasonNone,          // Envoy's TLS stack refuses it before any Check
	}
	cfg, err := fusion.LoadFile(c.SetFile)
	if err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, cfg, nil)
	for i, tc := range c.Cases {
		want, ok := differ[tc.Name]
		if !ok {
			want = tc.Want
		}
		resp := h.check(corpusCheck(c, tc, i, false))
		got := threat.Reason(resp.GetStatus().GetMessage())
		if statusCode(resp) == codes.OK {
			got = threat.ReasonNone
		}
		if got != want {
			t.Errorf("%s: leaf only gives %q, want %q", tc.Name, got, want)
		}
	}

	inter := c.Case(t, "valid_via_intermediate")
	interFile := filepath.Join(c.Dir, "intermediates.pem")
	if err := os.WriteFile(interFile, pemCert(inter.Chain[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	withInter, err := fusion.LoadFile(c.WriteSetFile(t, "with-intermediates.yaml", func(sc *fusion.SetConfig) {
		sc.Intermediates = &fusion.CASource{File: "intermediates.pem"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	h2 := startHarness(t, withInter, nil)
	if resp := h2.check(corpusCheck(c, inter, 0, false)); statusCode(resp) != codes.OK {
		t.Fatalf("with the set's intermediates the leaf alone must pass: %v", resp.GetStatus())
	}
}
