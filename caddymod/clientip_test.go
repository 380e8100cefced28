package caddymod

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// TestClientAddressRule: the fusion_set handler takes the client address by
// the shared rule (right-most X-Forwarded-For address that is not a trusted
// proxy), whether or not the user turned on trusted_proxies_strict, and
// hands it to the handlers after it as {client_ip}. Caddy itself takes the
// left-most address without strict mode, and the peer when every hop is
// trusted or skips malformed entries with it; neither is what mcc scores.
func TestClientAddressRule(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			resetCaddy(t)
			srv := newServerTLS(t)
			corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
			sink := filepath.Join(t.TempDir(), "events.jsonl")
			setFile := corp.WriteSetFile(t, "clientip.yaml", func(sc *fusion.SetConfig) {
				sc.Mode, sc.ThreatEvents = string(threat.ModeDetection), true
			})
			servers := "\tservers {\n\t\ttrusted_proxies static " + proxyIP + "/32 10.0.0.0/8\n"
			if strict {
				servers += "\t\ttrusted_proxies_strict\n"
			}
			servers += "\t}\n"
			cfg := globalOptions() + servers + fmt.Sprintf(`	mcc {
		fusion_sets %s
		sink file %s
	}
}
`, setFile, sink) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\trespond \"{client_ip}\"", corp.SetID))
			loadCaddyfile(t, cfg)

			cases := []struct {
				name, from string
				xff        []string
				want       string
			}{
				{"untrusted peer", directIP, []string{"6.6.6.6"}, directIP},
				{"forged left entry", proxyIP, []string{"6.6.6.6, " + forwardedIP}, forwardedIP},
				{"two lines", proxyIP, []string{"6.6.6.6", forwardedIP + ", 10.0.0.5"}, forwardedIP},
				{"every hop trusted", proxyIP, []string{"10.0.0.7, 10.0.0.5"}, "10.0.0.7"},
				{"malformed entry", proxyIP, []string{"6.6.6.6, junk"}, proxyIP},
			}
			for i, c := range cases {
				headers := []string{fmt.Sprintf("X-Test-Id: %d", i)}
				for _, l := range c.xff {
					headers = append(headers, "X-Forwarded-For: "+l)
				}
				r := newClient(t, srv, nil, c.from).mustGet(t, "/", headers...)
				if r.status != http.StatusOK || r.body != c.want {
					t.Errorf("%s: {client_ip} after fusion_set = %d %q, want %q", c.name, r.status, r.body, c.want)
				}
				evs := waitEvents(t, sink, i+1)
				if got := evs[len(evs)-1].ClientIP; got != c.want {
					t.Errorf("%s: event clientIP %q, want %q", c.name, got, c.want)
				}
			}
			if t.Failed() {
				t.Logf("events: %s", strings.Join(eventIPs(sinkEvents(t, sink)), " "))
			}
		})
	}
}

func eventIPs(evs []*threat.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ClientIP
	}
	return out
}
