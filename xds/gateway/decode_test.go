package gateway_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/xdstest"
)

// goodSection is a valid gateway section; tests break it one way at a time.
const goodSection = `gateway:
  authz:
    address: 127.0.0.1:9001
  listeners:
    - name: edge
      port: 8443
      certificate:
        cert_file: edge.pem
        key_file: edge-key.pem
      routes:
        - host: a.example.com
          fusion_set: app-a
          upstream: api-a
        - host: "*.b.example.com"
          path_prefix: /v1
          fusion_set: app-b
          upstream: api-b
  upstreams:
    - name: api-a
      endpoints: [127.0.0.1:8081]
    - name: api-b
      endpoints: ["[::1]:8082", 10.0.0.2:8082]
      http2: true
      connect_timeout: 2s
  node_groups:
    - cluster: edge-eu
      listeners: [edge]
`

func setup(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca := xdstest.NewCA(t, "server CA")
	leaf := ca.IssueServer(t, "a.example.com")
	xdstest.WriteFile(t, dir, "edge.pem", leaf.CertPEM)
	xdstest.WriteFile(t, dir, "edge-key.pem", leaf.KeyPEM)
	return dir
}

// decode decodes the section and loads its key material, as mcc xds does.
func decode(t *testing.T, dir, text string) (*gateway.Gateway, error) {
	t.Helper()
	g, err := decodeStructure(t, dir, text)
	if err != nil {
		return nil, err
	}
	if err := g.LoadMaterial(); err != nil {
		return nil, err
	}
	return g, nil
}

// decodeStructure is the structural decode alone, as mcc authz does it.
func decodeStructure(t *testing.T, dir, text string) (*gateway.Gateway, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("test YAML: %v", err)
	}
	var gw *yaml.Node
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "gateway" {
			gw = root.Content[i+1]
		}
	}
	return gateway.Decode(gw, gateway.Options{
		File:      "sets.yaml",
		BaseDir:   dir,
		FusionSet: func(id string) bool { return id == "app-a" || id == "app-b" },
	})
}

func TestDecodeGood(t *testing.T) {
	dir := setup(t)
	g, err := decode(t, dir, goodSection)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if g.Authz.Address != (gateway.Endpoint{IP: "127.0.0.1", Port: 9001}) || g.Authz.Timeout != gateway.DefaultAuthzTimeout {
		t.Errorf("authz = %+v", g.Authz)
	}
	l := g.Listener("edge")
	if l == nil || l.Address != "0.0.0.0" || l.Port != 8443 || l.CertFile != filepath.Join(dir, "edge.pem") || len(l.KeyPEM) == 0 {
		t.Fatalf("listener = %+v", l)
	}
	if len(l.Routes) != 2 || l.Routes[0].PathPrefix != "/" || l.Routes[1].PathPrefix != "/v1" || l.Routes[1].Host != "*.b.example.com" {
		t.Errorf("routes = %+v %+v", l.Routes[0], l.Routes[1])
	}
	b := g.Upstream("api-b")
	if b == nil || !b.HTTP2 || b.ConnectTimeout != 2*time.Second || len(b.Endpoints) != 2 || b.Endpoints[0].IP != "::1" {
		t.Errorf("upstream api-b = %+v", b)
	}
	if a := g.Upstream("api-a"); a.ConnectTimeout != gateway.DefaultUpstreamConnectTimeout || a.HTTP2 {
		t.Errorf("upstream api-a = %+v", a)
	}
	if got := g.Files(); len(got) != 2 {
		t.Errorf("Files() = %v", got)
	}
	for sni, want := range map[string]string{"a.example.com": "app-a", "x.b.example.com": "app-b", "y.x.b.example.com": "app-b"} {
		if id, ok := g.FusionSetForConnection(8443, sni); !ok || id != want {
			t.Errorf("FusionSetForConnection(8443, %q) = %q, %v; want %q", sni, id, ok, want)
		}
	}
	if _, ok := g.FusionSetForConnection(8443, "b.example.com"); ok {
		t.Error("wildcard *.b.example.com must not match b.example.com")
	}
}

func TestDecodeMistakes(t *testing.T) {
	dir := setup(t)
	tests := []struct {
		name      string
		old, new  string
		wantLine  int
		wantField string
		wantMsg   string
	}{
		{"unknown key", "      port: 8443\n", "      port: 8443\n      prot: tcp\n", 7, "gateway.listeners[0].prot", "unknown field"},
		{"unknown fusion set", "fusion_set: app-a", "fusion_set: app-c", 12, "gateway.listeners[0].routes[0].fusion_set", `unknown fusion set "app-c"`},
		{"missing cert file", "cert_file: edge.pem", "cert_file: gone.pem", 8, "gateway.listeners[0].certificate.cert_file", "file not found: " + filepath.Join(dir, "gone.pem")},
		{"bad port", "port: 8443", "port: 70000", 6, "gateway.listeners[0].port", "between 1 and 65535"},
		{"port as text", "port: 8443", "port: high", 6, "gateway.listeners[0].port", "between 1 and 65535"},
		{"host name endpoint", "endpoints: [127.0.0.1:8081]", "endpoints: [localhost:8081]", 20, "gateway.upstreams[0].endpoints[0]", "with an IP address"},
		{"bad listener address", "      port: 8443\n", "      port: 8443\n      address: any\n", 7, "gateway.listeners[0].address", "must be an IP address"},
		{"duplicate upstream", "name: api-b", "name: api-a", 21, "gateway.upstreams[1].name", `duplicate upstream name "api-a"`},
		{"unknown upstream", "upstream: api-a", "upstream: api-z", 13, "gateway.listeners[0].routes[0].upstream", `unknown upstream "api-z"`},
		{"host in two sets", `host: "*.b.example.com"`, "host: a.example.com", 16, "gateway.listeners[0].routes[1].fusion_set", `already guarded by fusion set "app-a"`},
		{"unknown listener in group", "listeners: [edge]", "listeners: [edge, edje]", 27, "gateway.node_groups[0].listeners[1]", `unknown listener "edje"`},
		{"bad host", "host: a.example.com", "host: A.example.com", 11, "gateway.listeners[0].routes[0].host", "lower case"},
		{"bad timeout", "connect_timeout: 2s", "connect_timeout: soon", 24, "gateway.upstreams[1].connect_timeout", "positive duration"},
		{"missing authz", "  authz:\n    address: 127.0.0.1:9001\n", "", 2, "gateway.authz", "missing"},
		{"bad name", "name: edge\n", "name: edge/1\n", 5, "gateway.listeners[0].name", "letters, digits"},
		{"wrong type", "http2: true", "http2: yes please", 23, "gateway.upstreams[1].http2", "true or false"},
		{"empty host", "host: a.example.com", `host: ""`, 11, "gateway.listeners[0].routes[0].host", "must not be empty"},
		{"number as host", "host: a.example.com", "host: 42", 11, "gateway.listeners[0].routes[0].host", "must be a string"},
		{"empty address", "      port: 8443\n", "      port: 8443\n      address: ''\n", 7, "gateway.listeners[0].address", "must not be empty"},
		{"scalar for a list", "endpoints: [127.0.0.1:8081]", "endpoints: 127.0.0.1:8081", 20, "gateway.upstreams[0].endpoints", "must be a list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(goodSection, tc.old, tc.new, 1)
			if text == goodSection {
				t.Fatalf("test case does not change the section")
			}
			_, err := decode(t, dir, text)
			var le *gateway.Error
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want *gateway.Error", err)
			}
			for _, p := range le.Problems {
				if p.File == "sets.yaml" && p.Line == tc.wantLine && p.Field == tc.wantField && strings.Contains(p.Msg, tc.wantMsg) {
					return
				}
			}
			t.Errorf("want sets.yaml:%d: %s: ...%s...; got:\n%v", tc.wantLine, tc.wantField, tc.wantMsg, err)
		})
	}
}

func TestDecodeKeyMismatch(t *testing.T) {
	dir := setup(t)
	other := xdstest.NewCA(t, "other").IssueServer(t, "a.example.com")
	xdstest.WriteFile(t, dir, "edge-key.pem", other.KeyPEM)
	_, err := decode(t, dir, goodSection)
	if err == nil || !strings.Contains(err.Error(), "sets.yaml:8: gateway.listeners[0].certificate: cert_file") || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeMissingSection(t *testing.T) {
	_, err := decode(t, t.TempDir(), "fusion_sets: []\n")
	if err == nil || !strings.Contains(err.Error(), "gateway: missing") {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeUnusedThings(t *testing.T) {
	dir := setup(t)
	text := strings.Replace(goodSection, "  node_groups:\n", "    - name: spare\n      endpoints: [127.0.0.1:9999]\n  node_groups:\n", 1)
	_, err := decode(t, dir, text)
	if err == nil || !strings.Contains(err.Error(), `upstream "spare" is used by no route`) {
		t.Errorf("unused upstream: err = %v", err)
	}
	_ = os.Remove(filepath.Join(dir, "nothing"))
}
