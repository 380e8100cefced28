package gateway

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Options tell Decode where the section came from and what it may refer to.
type Options struct {
	// File names the fusion set file in problems.
	File string
	// BaseDir resolves relative certificate paths (the file's directory).
	BaseDir string
	// FusionSet reports whether a fusion set id exists in the same file.
	FusionSet func(id string) bool
}

// Decode reads the gateway section n strictly: the structure only, no file
// is read (see LoadMaterial). On failure the error is a *Error listing
// every problem with file, line and field.
func Decode(n *yaml.Node, o Options) (*Gateway, error) {
	r := &reader{file: o.File}
	if n == nil || (resolve(n).Kind == yaml.ScalarNode && resolve(n).Tag == "!!null") {
		r.addf(n, "gateway", "missing: mcc xds needs a gateway section (listeners, routes, upstreams, node_groups, authz)")
		return nil, &Error{Problems: r.problems}
	}
	d := &decoder{reader: r, opts: o}
	g := d.gateway(n)
	if len(r.problems) > 0 {
		return nil, &Error{Problems: r.problems}
	}
	g.file = o.File
	return g, nil
}

type decoder struct {
	*reader
	opts Options
	// lines of what was decoded, for the cross-reference checks.
	listenerLines map[*Listener]*yaml.Node
	routeLines    map[*Route]routeNodes
	upstreamLines map[*Upstream]*yaml.Node
	groupLines    map[*NodeGroup]groupNodes
}

type routeNodes struct{ item, host, fusionSet, upstream *yaml.Node }
type groupNodes struct {
	item      *yaml.Node
	listeners []*yaml.Node
}

func (d *decoder) gateway(n *yaml.Node) *Gateway {
	g := &Gateway{}
	d.listenerLines = map[*Listener]*yaml.Node{}
	d.routeLines = map[*Route]routeNodes{}
	d.upstreamLines = map[*Upstream]*yaml.Node{}
	d.groupLines = map[*NodeGroup]groupNodes{}
	var have struct{ authz, listeners, upstreams, groups bool }
	if !d.mapping(n, "gateway",
		field{"authz", func(p string, v *yaml.Node) { have.authz = true; g.Authz = d.authz(p, v) }},
		field{"listeners", func(p string, v *yaml.Node) {
			have.listeners = true
			d.sequence(v, p, func(p string, v *yaml.Node) {
				if l := d.listener(p, v); l != nil {
					g.Listeners = append(g.Listeners, l)
				}
			})
		}},
		field{"upstreams", func(p string, v *yaml.Node) {
			have.upstreams = true
			d.sequence(v, p, func(p string, v *yaml.Node) {
				if u := d.upstream(p, v); u != nil {
					g.Upstreams = append(g.Upstreams, u)
				}
			})
		}},
		field{"node_groups", func(p string, v *yaml.Node) {
			have.groups = true
			d.sequence(v, p, func(p string, v *yaml.Node) {
				if ng := d.nodeGroup(p, v); ng != nil {
					g.NodeGroups = append(g.NodeGroups, ng)
				}
			})
		}},
	) {
		return nil
	}
	if !have.authz {
		d.addf(n, "gateway.authz", "missing: the address of mcc authz (ext_authz and access log service)")
	}
	if !have.listeners || len(g.Listeners) == 0 {
		d.addf(n, "gateway.listeners", "missing: at least one listener")
	}
	if !have.upstreams || len(g.Upstreams) == 0 {
		d.addf(n, "gateway.upstreams", "missing: at least one upstream")
	}
	if !have.groups || len(g.NodeGroups) == 0 {
		d.addf(n, "gateway.node_groups", "missing: at least one node group (which Envoy node clusters get which listeners)")
	}
	d.crossCheck(g)
	return g
}

func (d *decoder) authz(path string, n *yaml.Node) Authz {
	a := Authz{Timeout: DefaultAuthzTimeout}
	var haveAddr bool
	d.mapping(n, path,
		field{"address", func(p string, v *yaml.Node) { haveAddr = true; a.Address = d.endpoint(p, v) }},
		field{"timeout", func(p string, v *yaml.Node) { a.Timeout = d.duration(p, v) }},
		field{"access_log_address", func(p string, v *yaml.Node) { a.AccessLogAddress = d.endpoint(p, v) }},
		field{"tls", func(p string, v *yaml.Node) { a.TLS = d.upstreamTLS(p, v) }},
	)
	if !haveAddr {
		d.addf(n, path+".address", "missing: IP:port where mcc authz listens")
	}
	return a
}

// upstreamTLS reads the files and name with which Envoy reaches a service
// over mTLS. The files are Envoy's: they are named, never read.
func (d *decoder) upstreamTLS(path string, n *yaml.Node) *UpstreamTLS {
	t := &UpstreamTLS{}
	if !d.mapping(n, path,
		field{"ca_file", func(p string, v *yaml.Node) { t.CAFile = d.path(p, v) }},
		field{"cert_file", func(p string, v *yaml.Node) { t.CertFile = d.path(p, v) }},
		field{"key_file", func(p string, v *yaml.Node) { t.KeyFile = d.path(p, v) }},
		field{"server_name", func(p string, v *yaml.Node) {
			s := d.text(v, p)
			if s == "" {
				return
			}
			if net.ParseIP(s) == nil {
				if err := checkHost(s); err != nil || strings.HasPrefix(s, "*.") {
					d.addf(v, p, fmt.Sprintf("must be the DNS name or IP address in the server's certificate, got %q", s))
					return
				}
			}
			t.ServerName = s
		}},
	) {
		return nil
	}
	for _, f := range []struct{ key, val, why string }{
		{"ca_file", t.CAFile, "the CA that signs mcc authz's server certificate (Envoy verifies it)"},
		{"cert_file", t.CertFile, "Envoy's client certificate (mcc authz verifies it)"},
		{"key_file", t.KeyFile, "the key of Envoy's client certificate"},
		{"server_name", t.ServerName, "the name in mcc authz's server certificate: without it any certificate of the CA would pass as mcc authz"},
	} {
		if f.val == "" && !hasKey(n, f.key) {
			d.addf(n, path+"."+f.key, "missing: "+f.why)
		}
	}
	return t
}

func (d *decoder) listener(path string, n *yaml.Node) *Listener {
	l := &Listener{Address: DefaultListenerAddress}
	var haveCert, havePort bool
	ok := d.mapping(n, path,
		field{"name", func(p string, v *yaml.Node) { l.Name = d.name(p, v) }},
		field{"address", func(p string, v *yaml.Node) {
			s := d.text(v, p)
			if s != "" && net.ParseIP(s) == nil {
				d.addf(v, p, fmt.Sprintf("must be an IP address to bind, got %q", s))
			}
			l.Address = s
		}},
		field{"port", func(p string, v *yaml.Node) { havePort = true; l.Port = d.port(v, p) }},
		field{"certificate", func(p string, v *yaml.Node) { haveCert = true; d.certificate(p, v, l) }},
		field{"routes", func(p string, v *yaml.Node) {
			d.sequence(v, p, func(p string, v *yaml.Node) {
				if r := d.route(p, v); r != nil {
					l.Routes = append(l.Routes, r)
				}
			})
		}},
	)
	if !ok {
		return nil
	}
	if l.Name == "" && !hasKey(n, "name") {
		d.addf(n, path+".name", "missing")
	}
	if !havePort {
		d.addf(n, path+".port", "missing")
	}
	if !haveCert {
		d.addf(n, path+".certificate", "missing: the server certificate this listener presents (cert_file, key_file)")
	}
	if len(l.Routes) == 0 && !hasKey(n, "routes") {
		d.addf(n, path+".routes", "missing: at least one route")
	}
	l.sni = l.serverNames()
	d.listenerLines[l] = n
	return l
}

func (d *decoder) certificate(path string, n *yaml.Node, l *Listener) {
	var certNode, keyNode, envoyCert, envoyKey *yaml.Node
	l.Delivery = DeliveryInline
	if !d.mapping(n, path,
		field{"cert_file", func(p string, v *yaml.Node) { certNode = v; l.CertFile = d.path(p, v) }},
		field{"key_file", func(p string, v *yaml.Node) { keyNode = v; l.KeyFile = d.path(p, v) }},
		field{"delivery", func(p string, v *yaml.Node) {
			switch s := d.text(v, p); Delivery(s) {
			case DeliveryInline, DeliveryFile:
				l.Delivery = Delivery(s)
			case "":
			default:
				d.addf(v, p, fmt.Sprintf("must be %q (mcc xds sends the key by SDS) or %q (Envoy reads the files), got %q", DeliveryInline, DeliveryFile, s))
			}
		}},
		field{"envoy_cert_path", func(p string, v *yaml.Node) { envoyCert = v; l.EnvoyCertPath = d.path(p, v) }},
		field{"envoy_key_path", func(p string, v *yaml.Node) { envoyKey = v; l.EnvoyKeyPath = d.path(p, v) }},
	) {
		return
	}
	if l.Delivery == DeliveryFile {
		// Envoy reads the files; mcc xds never touches them (the key need
		// not even exist on this host).
		if l.EnvoyCertPath == "" {
			l.EnvoyCertPath = l.CertFile
		}
		if l.EnvoyKeyPath == "" {
			l.EnvoyKeyPath = l.KeyFile
		}
		if certNode == nil && envoyCert == nil {
			d.addf(n, path+".envoy_cert_path", "missing: the certificate file as Envoy sees it (or cert_file)")
		}
		if keyNode == nil && envoyKey == nil {
			d.addf(n, path+".envoy_key_path", "missing: the key file as Envoy sees it (or key_file)")
		}
		return
	}
	for _, f := range []struct {
		key  string
		node *yaml.Node
	}{{"envoy_cert_path", envoyCert}, {"envoy_key_path", envoyKey}} {
		if f.node != nil {
			d.addf(f.node, path+"."+f.key, "only with delivery: file (inline delivery sends the files' contents)")
		}
	}
	if certNode == nil {
		d.addf(n, path+".cert_file", "missing")
	}
	if keyNode == nil {
		d.addf(n, path+".key_file", "missing")
	}
	// The files are read by LoadMaterial, not here: a reader that only
	// routes by the section (mcc authz) must never read the private key.
	l.material = &materialNodes{item: n, path: path, cert: certNode, key: keyNode}
}

func (d *decoder) route(path string, n *yaml.Node) *Route {
	r := &Route{PathPrefix: DefaultPathPrefix}
	var rn routeNodes
	rn.item = n
	ok := d.mapping(n, path,
		field{"host", func(p string, v *yaml.Node) { rn.host = v; r.Host = d.host(p, v) }},
		field{"path_prefix", func(p string, v *yaml.Node) {
			s := d.text(v, p)
			if s != "" && (!strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?# \t")) {
				d.addf(v, p, fmt.Sprintf("must start with / and hold no query, fragment or space, got %q", s))
			}
			r.PathPrefix = s
		}},
		field{"fusion_set", func(p string, v *yaml.Node) { rn.fusionSet = v; r.FusionSet = d.text(v, p) }},
		field{"upstream", func(p string, v *yaml.Node) { rn.upstream = v; r.Upstream = d.text(v, p) }},
	)
	if !ok {
		return nil
	}
	for _, f := range []struct {
		name string
		node *yaml.Node
	}{{"host", rn.host}, {"fusion_set", rn.fusionSet}, {"upstream", rn.upstream}} {
		if f.node == nil {
			d.addf(n, path+"."+f.name, "missing")
		}
	}
	if rn.fusionSet != nil && r.FusionSet != "" && d.opts.FusionSet != nil && !d.opts.FusionSet(r.FusionSet) {
		d.addf(rn.fusionSet, path+".fusion_set", fmt.Sprintf("unknown fusion set %q (not in fusion_sets)", r.FusionSet))
	}
	d.routeLines[r] = rn
	return r
}

func (d *decoder) upstream(path string, n *yaml.Node) *Upstream {
	u := &Upstream{ConnectTimeout: DefaultUpstreamConnectTimeout}
	var endpointItems = -1
	ok := d.mapping(n, path,
		field{"name", func(p string, v *yaml.Node) { u.Name = d.name(p, v) }},
		field{"endpoints", func(p string, v *yaml.Node) {
			endpointItems = 0
			d.sequence(v, p, func(p string, v *yaml.Node) {
				endpointItems++
				if e := d.endpoint(p, v); e.Port != 0 {
					u.Endpoints = append(u.Endpoints, e)
				}
			})
		}},
		field{"http2", func(p string, v *yaml.Node) { u.HTTP2 = d.boolean(v, p) }},
		field{"connect_timeout", func(p string, v *yaml.Node) { u.ConnectTimeout = d.duration(p, v) }},
	)
	if !ok {
		return nil
	}
	if !hasKey(n, "name") {
		d.addf(n, path+".name", "missing")
	}
	if endpointItems == 0 {
		d.addf(valueOf(n, "endpoints"), path+".endpoints", "must list at least one IP:port")
	} else if endpointItems < 0 {
		d.addf(n, path+".endpoints", "missing: at least one IP:port")
	}
	d.upstreamLines[u] = n
	return u
}

func (d *decoder) nodeGroup(path string, n *yaml.Node) *NodeGroup {
	g := &NodeGroup{}
	gn := groupNodes{item: n}
	ok := d.mapping(n, path,
		field{"cluster", func(p string, v *yaml.Node) {
			g.Cluster = d.text(v, p)
			if g.Cluster != "" && strings.ContainsAny(g.Cluster, " \t\r\n") {
				d.addf(v, p, fmt.Sprintf("must not contain white space, got %q", g.Cluster))
			}
		}},
		field{"listeners", func(p string, v *yaml.Node) {
			d.sequence(v, p, func(p string, v *yaml.Node) {
				if s := d.text(v, p); s != "" {
					g.Listeners = append(g.Listeners, s)
					gn.listeners = append(gn.listeners, v)
				}
			})
		}},
		field{"peers", func(p string, v *yaml.Node) {
			seen := map[string]bool{}
			d.sequence(v, p, func(p string, v *yaml.Node) {
				s := d.text(v, p)
				switch {
				case s == "":
				case len(s) > maxPeerLen || strings.ContainsAny(s, " \t\r\n"):
					d.addf(v, p, fmt.Sprintf("must be a certificate identity (URI SAN, DNS SAN or CN) of at most %d characters without white space, got %q", maxPeerLen, s))
				case seen[s]:
					d.addf(v, p, fmt.Sprintf("peer %q listed twice", s))
				default:
					seen[s] = true
					g.Peers = append(g.Peers, s)
				}
			})
		}},
	)
	if !ok {
		return nil
	}
	if !hasKey(n, "cluster") {
		d.addf(n, path+".cluster", "missing: the Envoy node cluster (--service-cluster or node.cluster in the bootstrap)")
	}
	if len(g.Listeners) == 0 && !hasKey(n, "listeners") {
		d.addf(n, path+".listeners", "missing: at least one listener name")
	}
	d.groupLines[g] = gn
	return g
}

// maxPeerLen bounds a peer identity (a SPIFFE ID is at most 2048 bytes).
const maxPeerLen = 2048

// name reads a resource name; it becomes part of Envoy resource names.
func (d *decoder) name(path string, n *yaml.Node) string {
	s := d.text(n, path)
	if s == "" {
		return ""
	}
	if !validName(s) {
		d.addf(n, path, fmt.Sprintf("must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", s))
		return ""
	}
	return s
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 100 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// host reads a TLS server name: a lower-case DNS name, optionally with a
// leading "*." wildcard label (Envoy's server_names and domains accept both).
func (d *decoder) host(path string, n *yaml.Node) string {
	s := d.text(n, path)
	if s == "" {
		return ""
	}
	if err := checkHost(s); err != nil {
		d.addf(n, path, err.Error())
		return ""
	}
	return s
}

func checkHost(s string) error {
	name := strings.TrimPrefix(s, "*.")
	if net.ParseIP(s) != nil {
		return fmt.Errorf("must be a DNS name, not an IP address (TLS clients send no SNI for IPs), got %q", s)
	}
	if strings.Contains(s, ":") {
		return fmt.Errorf("must be a DNS name without a port, got %q", s)
	}
	if s != strings.ToLower(s) {
		return fmt.Errorf("must be lower case, got %q", s)
	}
	if len(name) > 253 || name == "" {
		return fmt.Errorf("must be a DNS name, got %q", s)
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("must be a DNS name (only a whole leading label may be '*'), got %q", s)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("must be a DNS name (only a whole leading label may be '*'), got %q", s)
			}
		}
	}
	return nil
}

// endpoint reads "IP:port". Envoy takes EDS endpoints as IP addresses only.
func (d *decoder) endpoint(path string, n *yaml.Node) Endpoint {
	s := d.text(n, path)
	if s == "" {
		return Endpoint{}
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		d.addf(n, path, fmt.Sprintf("must be IP:port, got %q", s))
		return Endpoint{}
	}
	ip := net.ParseIP(host)
	if ip == nil {
		d.addf(n, path, fmt.Sprintf("must be IP:port with an IP address (Envoy does not resolve names of EDS endpoints), got %q", s))
		return Endpoint{}
	}
	port, err := strconv.ParseUint(portText, 10, 32)
	if err != nil || port < 1 || port > 65535 {
		d.addf(n, path, fmt.Sprintf("port must be between 1 and 65535, got %q", s))
		return Endpoint{}
	}
	return Endpoint{IP: ip.String(), Port: uint32(port)}
}

func (d *decoder) duration(path string, n *yaml.Node) time.Duration {
	s, ok := d.scalar(n, path, "a duration like \"250ms\" or \"5s\"")
	if !ok {
		return 0
	}
	v, err := parseDuration(s)
	if err != nil || v <= 0 {
		d.addf(n, path, fmt.Sprintf("must be a positive duration like \"250ms\" or \"5s\", got %q", s))
		return 0
	}
	return v
}

// path reads a file path, relative to the fusion set file's directory.
func (d *decoder) path(p string, n *yaml.Node) string {
	s := d.text(n, p)
	if s == "" {
		return ""
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(d.opts.BaseDir, s)
	}
	return filepath.Clean(s)
}

func hasKey(n *yaml.Node, key string) bool { return valueOf(n, key) != nil }

func valueOf(n *yaml.Node, key string) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// parseDuration accepts Go duration text and a whole-day "d" suffix, like
// the durations of the fusion set file.
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(strings.TrimSpace(s))
}
