package quickstart

import (
	"fmt"
	"strings"
)

// gatewayConfig is everything the generated Caddyfile and fusion set file
// depend on. Paths are absolute.
type gatewayConfig struct {
	Mode       string // "defense" or "detection"
	BindHost   string // "" binds every interface
	Port       string
	Upstream   string // host:port of the echo upstream
	FusionFile string
	SetID      string
	AppID      string
	ClientCA   string // the CA that issues app certificates
	Revoked    string // the CA's revocation list (mcc revoke updates it)
	ServerCert string
	ServerKey  string
	EventsFile string
	CaddyLog   string
	Storage    string
}

// blockMessage is what a blocked user sees. It is the fusion set's message,
// so the printed curl lines can say what to expect.
const blockMessage = "This app could not be verified. Please install the official app (mcc quickstart)."

// fusionSetYAML is the quickstart's fusion set file. The CA and the
// revocation list are referenced by absolute path, so the file also works
// when copied elsewhere (for example to try it with cmd/caddy).
func fusionSetYAML(c gatewayConfig) string {
	return fmt.Sprintf(`# Written by mcc quickstart on every start; edit a copy, not this file.
# The format is documented in examples/fusion-sets.yaml.
fusion_sets:
  - id: %s
    description: the mcc quickstart's demo app
    # The demo CA (ca/ in the quickstart directory) that issued app.p12 and
    # app-cert.pem; a certificate from any other CA, such as
    # other-cert.pem, is refused with reason CERT_UNTRUSTED.
    trusted_ca:
      file: %s
    # The certificate must carry the URI SAN mcc://%s/%s.
    app_id: %s
    # mcc revoke --ca ca --cert app-cert.pem (or --serial <hex>), run in the
    # quickstart directory, takes effect within seconds.
    revocation:
      files:
        - %s
    # defense: block with the message below; detection: pass the request on
    # with the event in the Mcc-Threat-Event header.
    mode: %s
    threat_events: true
    message: %s
    device_headers:
      deviceID: X-Device-Id
      osVersion: X-Os-Version
    # One certificate seen with two device ids within an hour is reported
    # as RATE_ANOMALY: an install certificate belongs to one device, so a
    # second one means a copy (a build certificate is in every install, so
    # for it the count is of installs).
    clone_detection:
      window: 1h
      max_devices: 2
`, c.SetID, yamlString(c.ClientCA), c.SetID, c.AppID, c.AppID, yamlString(c.Revoked),
		c.Mode, yamlString(blockMessage))
}

// caddyfile is the quickstart's Caddyfile: the mcc app with a memory store
// and a file sink, one HTTPS site on the requested address with a static
// server certificate (no `tls internal`, so nothing is installed into a trust
// store), client certificates requested but judged by the fusion set, and
// the echo upstream behind it.
//
// Client certificates are requested with mode `request` rather than verified
// by the TLS stack, so that a certificate from another CA reaches the
// fusion_set handler: it then gets the set's message (defense) or is passed
// on with its event (detection), and it is reported as a threat event in
// both modes. The handshake still proves the client holds the key.
func caddyfile(c gatewayConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by mcc quickstart on every start (the upstream port changes).\n")
	fmt.Fprintf(&b, "{\n")
	fmt.Fprintf(&b, "\tadmin off\n")
	fmt.Fprintf(&b, "\tpersist_config off\n")
	fmt.Fprintf(&b, "\tauto_https disable_redirects\n")
	fmt.Fprintf(&b, "\tgrace_period 3s\n")
	fmt.Fprintf(&b, "\tstorage file_system %s\n", caddyToken(c.Storage))
	fmt.Fprintf(&b, "\tlog {\n\t\toutput file %s\n\t}\n", caddyToken(c.CaddyLog))
	fmt.Fprintf(&b, "\tmcc {\n")
	fmt.Fprintf(&b, "\t\tfusion_sets %s\n", caddyToken(c.FusionFile))
	fmt.Fprintf(&b, "\t\tstore memory\n")
	fmt.Fprintf(&b, "\t\tsink file %s\n", caddyToken(c.EventsFile))
	fmt.Fprintf(&b, "\t\tsink log\n")
	fmt.Fprintf(&b, "\t}\n")
	fmt.Fprintf(&b, "}\n\n")
	fmt.Fprintf(&b, "localhost:%s {\n", c.Port)
	if c.BindHost != "" {
		fmt.Fprintf(&b, "\tbind %s\n", caddyToken(c.BindHost))
	}
	fmt.Fprintf(&b, "\ttls %s %s {\n", caddyToken(c.ServerCert), caddyToken(c.ServerKey))
	fmt.Fprintf(&b, "\t\tclient_auth {\n\t\t\tmode request\n\t\t}\n")
	fmt.Fprintf(&b, "\t}\n")
	fmt.Fprintf(&b, "\tfusion_set %s\n", c.SetID)
	fmt.Fprintf(&b, "\treverse_proxy %s\n", c.Upstream)
	fmt.Fprintf(&b, "}\n")
	return b.String()
}

// caddyToken quotes s for the Caddyfile when it holds spaces or quotes.
// Paths with braces are refused earlier (they would read as placeholders).
func caddyToken(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\r\n\"'`") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// yamlString is s as a double-quoted YAML scalar.
func yamlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
