package caddymod

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/mccgate/mcc/fusion/fusiontest"
)

// adapt runs the Caddyfile adapter, as `caddy adapt` does.
func adapt(t *testing.T, src string) (map[string]any, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("adapted config is not JSON: %v\n%s", err, out)
	}
	return m, nil
}

// dig walks a decoded JSON value by object keys and array indexes.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: not an object: %v", k, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at [%d]: not an array that long: %v", k, v)
			}
			v = a[k]
		}
	}
	return v
}

func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad expected JSON: %v\n%s", err, s)
	}
	return v
}

func assertJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	if w := jsonValue(t, want); !reflect.DeepEqual(got, w) {
		g, _ := json.MarshalIndent(got, "", "  ")
		t.Errorf("%s:\ngot  %s\nwant %s", what, g, want)
	}
}

func TestAdaptGlobalOptionHandlerAndVerifier(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	pin := fusiontest.SPKIPin(corp.LeafKey.Public())
	src := fmt.Sprintf(`{
	mcc {
		fusion_sets %[1]s
		fusion_set inline-app {
			description Inline app set
			trusted_ca %[2]s
			intermediates %[2]s
			app_id com.example.inline
			spki_pin %[4]s %[4]s
			revoke_serial 0a 0b
			revoke_fingerprint ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12
			revocation_file %[3]s
			min_rsa_bits 3072
			allowed_curves P-256 P-384
			require_client_auth_eku false
			max_lifetime 90d
			max_chain_depth 3
			block_build build-1 build-2
			min_build_date 2026-01-01
			mode detection
			threat_events on
			message Please update the app
			status 451
			score NO_CLIENT_CERT 5
			score CERT_REVOKED 70
			fail_safe 100 window 10m duration 1h
			device_header deviceID X-Device-Id
			device_header osVersion X-Os-Version
		}
		fusion_set block-form {
			trusted_ca %[2]s
			app_id com.example.block
			mode defense
			threat_events off
			fail_safe {
				threshold 50
				window 5m
				subjects address certificate
				ipv4_prefix 24
				ipv6_prefix 56
			}
		}
		store memory
		sink log
		sink file /var/log/mcc/events.jsonl max_size 10MiB keep 3
		node edge-1
		watch_interval 5s
	}
}

app.localhost {
	tls internal {
		client_auth {
			mode verify_if_given
			trust_pool file %[2]s
			verifier fusion_set bank-prod
		}
	}
	@api path /api/*
	fusion_set @api bank-prod {
		cert_header X-Forwarded-Client-Cert xfcc
	}
	fusion_set inline-app
	reverse_proxy 127.0.0.1:8080
}
`, corp.SetFile, corp.CAFile, corp.RevocationFile, pin)
	cfg, err := adapt(t, src)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	ns := func(d time.Duration) string { return fmt.Sprint(int64(d)) }
	assertJSON(t, "apps.mcc", dig(t, cfg, "apps", "mcc"), fmt.Sprintf(`{
		"fusion_sets_file": %[1]q,
		"fusion_sets": [
			{
				"id": "inline-app",
				"description": "Inline app set",
				"trusted_ca": {"file": %[2]q},
				"intermediates": {"file": %[2]q},
				"app_id": "com.example.inline",
				"spki_pins": [%[8]q, %[8]q],
				"revocation": {"serials": ["0a", "0b"], "fingerprints": ["ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"], "files": [%[3]q]},
				"crypto": {"min_rsa_bits": 3072, "allowed_curves": ["P-256", "P-384"], "require_client_auth_eku": false},
				"max_lifetime": %[4]s,
				"max_chain_depth": 3,
				"builds": {"blocked": ["build-1", "build-2"], "min_build_date": "2026-01-01"},
				"mode": "detection",
				"threat_events": true,
				"message": "Please update the app",
				"status": 451,
				"scores": {"NO_CLIENT_CERT": 5, "CERT_REVOKED": 70},
				"fail_safe": {"threshold": 100, "window": %[5]s, "duration": %[6]s},
				"device_headers": {"deviceID": "X-Device-Id", "osVersion": "X-Os-Version"}
			},
			{
				"id": "block-form",
				"trusted_ca": {"file": %[2]q},
				"app_id": "com.example.block",
				"revocation": {},
				"crypto": {},
				"builds": {},
				"mode": "defense",
				"threat_events": false,
				"fail_safe": {"threshold": 50, "window": %[7]s, "subjects": ["address", "certificate"], "ipv4_prefix": 24, "ipv6_prefix": 56}
			}
		],
		"store": {"type": "memory"},
		"sinks": [
			{"type": "log"},
			{"type": "file", "path": "/var/log/mcc/events.jsonl", "max_size": 10485760, "keep": 3}
		],
		"node": "edge-1",
		"watch_interval": 5000000000
	}`, corp.SetFile, corp.CAFile, corp.RevocationFile, ns(90*24*time.Hour), ns(10*time.Minute), ns(time.Hour), ns(5*time.Minute), pin))

	// The verifier inside the TLS connection policy.
	pols := dig(t, cfg, "apps", "http", "servers", "srv0", "tls_connection_policies").([]any)
	found := false
	for _, p := range pols {
		if ca, ok := p.(map[string]any)["client_authentication"]; ok {
			found = true
			assertJSON(t, "client_authentication.verifiers", dig(t, ca, "verifiers"), `[{"verifier": "fusion_set", "fusion_set": "bank-prod"}]`)
		}
	}
	if !found {
		t.Fatal("no client_authentication in the adapted TLS connection policies")
	}

	// The handlers, ordered before reverse_proxy without an `order` line,
	// the first one behind its matcher.
	routes := dig(t, cfg, "apps", "http", "servers", "srv0", "routes", 0, "handle", 0, "routes")
	raw, _ := json.Marshal(routes)
	s := string(raw)
	first := strings.Index(s, `"handler":"fusion_set"`)
	proxy := strings.Index(s, `"handler":"reverse_proxy"`)
	if first < 0 || proxy < 0 || first > proxy {
		t.Fatalf("fusion_set must come before reverse_proxy: %s", s)
	}
	if !strings.Contains(s, `{"cert_header":"X-Forwarded-Client-Cert","cert_header_format":"xfcc","fusion_set":"bank-prod","handler":"fusion_set"}`) {
		t.Errorf("handler with cert_header not found in %s", s)
	}
	if !strings.Contains(s, `{"fusion_set":"inline-app","handler":"fusion_set"}`) {
		t.Errorf("plain handler not found in %s", s)
	}
	if !strings.Contains(s, `"path":["/api/*"]`) {
		t.Errorf("matcher not kept in %s", s)
	}
}

// TestAdaptGolden pins the whole adapted config of a small Caddyfile with
// caddytest's own adapter assertion.
func TestAdaptGolden(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	caddytest.AssertAdapt(t, fmt.Sprintf(`{
	mcc {
		fusion_sets %s
		store memory
		sink file /tmp/events.jsonl
	}
}

:8443 {
	fusion_set bank-prod
	respond ok
}
`, corp.SetFile), "caddyfile", fmt.Sprintf(`{
	"apps": {
		"http": {
			"servers": {
				"srv0": {
					"listen": [
						":8443"
					],
					"routes": [
						{
							"handle": [
								{
									"fusion_set": "bank-prod",
									"handler": "fusion_set"
								},
								{
									"body": "ok",
									"handler": "static_response"
								}
							]
						}
					]
				}
			}
		},
		"mcc": {
			"fusion_sets_file": %q,
			"store": {
				"type": "memory"
			},
			"sinks": [
				{
					"type": "file",
					"path": "/tmp/events.jsonl"
				}
			]
		}
	}
}`, corp.SetFile))
}

func TestAdaptErrors(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	global := func(body string) string {
		return "{\n\tmcc {\n" + body + "\n\t}\n}\n:8443 {\n\trespond ok\n}\n"
	}
	tests := []struct {
		name, src, want string
	}{
		{"unknown option", global("\t\tbogus 1"), `unrecognized mcc option "bogus", at Caddyfile:3`},
		{"twice fusion_sets", global("\t\tfusion_sets a.yaml\n\t\tfusion_sets b.yaml"), "fusion_sets may be given only once"},
		{"store", global("\t\tstore postgres"), "store: want `store memory` or `store redis <url>`"},
		{"store redis url", global("\t\tstore redis http://x"), `store "http://x" is neither "memory" nor a redis:// or rediss:// URL`},
		{"sink type", global("\t\tsink kafka"), `unknown sink type "kafka"`},
		{"sink size", global("\t\tsink file /tmp/x max_size lots"), "max_size: invalid size"},
		{"sink keep", global("\t\tsink file /tmp/x keep -1"), "keep: want a whole number"},
		{"watch interval", global("\t\twatch_interval soon"), `watch_interval: invalid duration "soon"`},
		{"set without id", global("\t\tfusion_set {\n\t\t}"), "missing fusion set id"},
		{"set unknown key", global("\t\tfusion_set a {\n\t\t\tcolour blue\n\t\t}"), `fusion_set a: unrecognized setting "colour", at Caddyfile:4`},
		{"set bad score reason", global("\t\tfusion_set a {\n\t\t\tscore NOT_A_REASON 3\n\t\t}"), `unknown reason code "NOT_A_REASON"`},
		{"set bad bool", global("\t\tfusion_set a {\n\t\t\tthreat_events maybe\n\t\t}"), "want on|off"},
		{"set bad duration", global("\t\tfusion_set a {\n\t\t\tmax_lifetime forever\n\t\t}"), "max_lifetime"},
		{"fail_safe empty subjects", global("\t\tfusion_set a {\n\t\t\tfail_safe {\n\t\t\t\tthreshold 5\n\t\t\t\tsubjects\n\t\t\t}\n\t\t}"), "fail_safe subjects needs address, device and/or certificate"},
		{"fail_safe bad prefix", global("\t\tfusion_set a {\n\t\t\tfail_safe {\n\t\t\t\tthreshold 5\n\t\t\t\tipv6_prefix wide\n\t\t\t}\n\t\t}"), "fail_safe ipv6_prefix: want a prefix length"},
		{"fail_safe without threshold", global("\t\tfusion_set a {\n\t\t\tfail_safe {\n\t\t\t\twindow 5m\n\t\t\t}\n\t\t}"), "fail_safe needs a threshold"},
		{"compile error has line", global(fmt.Sprintf("\t\tfusion_set a {\n\t\t\ttrusted_ca %s\n\t\t\tapp_id x\n\t\t\tmode detection\n\t\t\tthreat_events off\n\t\t}", corp.CAFile)), "can neither block nor report: set threat_events: true or mode: defense, at Caddyfile:3"},
		{"missing ca file", global("\t\tfusion_set a {\n\t\t\ttrusted_ca /nonexistent/ca.pem\n\t\t\tapp_id x\n\t\t\tmode defense\n\t\t}"), "/nonexistent/ca.pem"},
		{"duplicate set", global(fmt.Sprintf("\t\tfusion_set a {\n\t\t\ttrusted_ca %[1]s\n\t\t\tapp_id x\n\t\t\tmode defense\n\t\t}\n\t\tfusion_set a {\n\t\t\ttrusted_ca %[1]s\n\t\t\tapp_id x\n\t\t\tmode defense\n\t\t}", corp.CAFile)), `fusion_set "a" is defined more than once (first at line 3)`},
		{"handler without id", "{\n}\n:8443 {\n\tfusion_set\n}\n", "missing fusion set id"},
		{"handler bad format", "{\n}\n:8443 {\n\tfusion_set a {\n\t\tcert_header X-C der\n\t}\n}\n", `cert_header format "der"`},
		{"handler unknown setting", "{\n}\n:8443 {\n\tfusion_set a {\n\t\tcolour blue\n\t}\n}\n", `unrecognized setting "colour"`},
		{"cert_header unknown option", "{\n}\n:8443 {\n\tfusion_set a {\n\t\tcert_header X-C {\n\t\t\tcolour blue\n\t\t}\n\t}\n}\n", `cert_header: unrecognized setting "colour"`},
		{"cert_header max_size", "{\n}\n:8443 {\n\tfusion_set a {\n\t\tcert_header X-C {\n\t\t\tmax_size lots\n\t\t}\n\t}\n}\n", "max_size: invalid size"},
		{"cert_header max_size too big", "{\n}\n:8443 {\n\tfusion_set a {\n\t\tcert_header X-C {\n\t\t\tmax_size 2MiB\n\t\t}\n\t}\n}\n", "at most 1048576 bytes"},
		{"allow_multiple_elements with pem", "{\n}\n:8443 {\n\tfusion_set a {\n\t\tcert_header X-C pem {\n\t\t\tallow_multiple_elements\n\t\t}\n\t}\n}\n", "for the xfcc format only"},
		{"store placeholder typo", global("\t\tstore redis env.MCC_REDIS_URL"), `store "env.MCC_REDIS_URL" is neither "memory" nor a redis:// or rediss:// URL`},
		{"verifier without id", "{\n}\napp.localhost {\n\ttls internal {\n\t\tclient_auth {\n\t\t\tverifier fusion_set\n\t\t}\n\t}\n}\n", "missing fusion set id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := adapt(t, tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("adapt error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestAdaptSecretsAndCertHeaderOptions: placeholders stay placeholders in
// the adapted config (they are expanded at provisioning), and the
// cert_header block's options reach the handler.
func TestAdaptSecretsAndCertHeaderOptions(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	src := fmt.Sprintf(`{
	mcc {
		fusion_sets %s
		store redis {env.MCC_REDIS_URL}
		node {env.HOSTNAME}
	}
}
:8443 {
	fusion_set bank-prod {
		cert_header X-Forwarded-Client-Cert xfcc {
			max_size 16KiB
			allow_multiple_elements
		}
	}
	respond ok
}
`, corp.SetFile)
	cfg, err := adapt(t, src)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if got := dig(t, cfg, "apps", "mcc", "store", "url"); got != "{env.MCC_REDIS_URL}" {
		t.Errorf("store = %v, want the placeholder kept", got)
	}
	if got := dig(t, cfg, "apps", "mcc", "node"); got != "{env.HOSTNAME}" {
		t.Errorf("node = %v, want the placeholder kept", got)
	}
	raw, _ := json.Marshal(dig(t, cfg, "apps", "http", "servers", "srv0", "routes"))
	want := `{"cert_header":"X-Forwarded-Client-Cert","cert_header_allow_multiple_elements":true,"cert_header_format":"xfcc","cert_header_max_size":16384,"fusion_set":"bank-prod","handler":"fusion_set"}`
	if !strings.Contains(string(raw), want) {
		t.Errorf("handler %s not found in %s", want, raw)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "10MiB": 10 << 20, "10mb": 10_000_000, "2 KiB": 2048, "1GiB": 1 << 30, "5B": 5} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "MiB", "1.5MiB", "ten"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}
