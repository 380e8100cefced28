// Package gateway is the `gateway:` section of the fusion set file: the Envoy
// side of a deployment, which `mcc xds` turns into listeners, routes,
// clusters and secrets. Package fusion keeps the section as a YAML node; this
// package decodes it strictly, with file, line and field in every problem.
//
//	gateway:
//	  authz:                        # mcc authz: ext_authz and the handshake access log
//	    address: 127.0.0.1:9001     # IP:port (Envoy resolves no names for EDS endpoints)
//	    timeout: 250ms              # ext_authz call timeout (default 250ms)
//	    access_log_address: 127.0.0.1:9002  # optional: mcc authz --access-log-listen
//	    tls:                        # optional: Envoy calls mcc authz over mTLS
//	      ca_file: control-ca.pem   # CA of mcc authz's server certificate  } files Envoy
//	      cert_file: envoy.pem      # Envoy's client certificate            } reads; relative
//	      key_file: envoy-key.pem   # its key                               } to this file
//	      server_name: localhost    # SNI and the SAN Envoy checks (DNS name or IP)
//	  listeners:
//	    - name: edge                # Envoy listener mcc-listener-edge
//	      address: 0.0.0.0          # IP to bind (default 0.0.0.0)
//	      port: 8443
//	      certificate:              # the server certificate this listener presents
//	        cert_file: edge.pem     # PEM chain, leaf first; relative to the fusion set file
//	        key_file: edge-key.pem  # PEM private key
//	        delivery: inline        # inline (default): mcc xds reads both and sends them by SDS;
//	                                # file: Envoy reads them (SDS names the paths), mcc xds reads neither
//	        envoy_cert_path: /etc/envoy/edge.pem      # file delivery: the paths as Envoy sees
//	        envoy_key_path: /etc/envoy/edge-key.pem   # them (default: cert_file, key_file)
//	      routes:
//	        - host: api.app-a.example.com  # TLS SNI and HTTP Host; "*.example.com" allowed
//	          path_prefix: /               # default "/"
//	          fusion_set: app-a            # the fusion set that guards this route
//	          upstream: app-a-api          # one of upstreams[].name
//	  upstreams:
//	    - name: app-a-api           # Envoy cluster mcc-upstream-app-a-api
//	      endpoints: [127.0.0.1:8081]
//	      http2: false              # talk HTTP/2 (h2c) to the endpoints
//	      connect_timeout: 5s       # default 5s
//	  node_groups:
//	    - cluster: edge-eu          # matched against the Envoy node's `cluster`
//	      listeners: [edge]
//	      peers: ["spiffe://mcc/envoy/edge-eu"]  # client certificate identities allowed to act as it
//
// Every Envoy whose node.cluster names a node group gets that group's
// listeners and everything they reference, nothing more: in ADS mode the
// control plane may only answer a request for named resources (RDS, EDS,
// SDS) with exactly the resources the node asked for.
package gateway

import "time"

// Defaults for optional fields.
const (
	DefaultAuthzTimeout           = 250 * time.Millisecond
	DefaultUpstreamConnectTimeout = 5 * time.Second
	DefaultListenerAddress        = "0.0.0.0"
	DefaultPathPrefix             = "/"
)

// Gateway is the decoded, checked gateway section.
type Gateway struct {
	Authz      Authz
	Listeners  []*Listener
	Upstreams  []*Upstream
	NodeGroups []*NodeGroup

	file string // names the fusion set file in LoadMaterial's problems
}

// Authz is where mcc authz listens: Envoy calls its ext_authz service and
// streams the listener access log (handshake failures) to it.
type Authz struct {
	Address Endpoint
	Timeout time.Duration
	// AccessLogAddress, when set, is where the access-log service listens
	// apart from Check (mcc authz --access-log-listen); zero: Address.
	AccessLogAddress Endpoint
	// TLS, when set, makes Envoy call mcc authz (both services) over mTLS.
	TLS *UpstreamTLS
}

// UpstreamTLS is how Envoy reaches a control-channel service over mTLS.
// The paths are files Envoy reads on its own host: mcc xds names them and
// never reads them (relative paths are resolved against the fusion set
// file's directory, which fits an Envoy on the same host; write absolute
// paths otherwise).
type UpstreamTLS struct {
	// CAFile holds the CA that signs the server's certificate.
	CAFile string
	// CertFile and KeyFile are Envoy's client certificate and key.
	CertFile, KeyFile string
	// ServerName is sent as SNI (when a DNS name) and must be a SAN of the
	// server's certificate (DNS, or IP address).
	ServerName string
}

// Delivery says how a listener's certificate reaches Envoy.
type Delivery string

// Certificate deliveries.
const (
	// DeliveryInline: mcc xds reads the certificate and key and sends both
	// inline in the SDS secret (the key travels over the xDS channel).
	DeliveryInline Delivery = "inline"
	// DeliveryFile: the SDS secret names files on the Envoy host; Envoy
	// reads (and watches) them, and no private key leaves that host.
	DeliveryFile Delivery = "file"
)

// Endpoint is an IP address and a port.
type Endpoint struct {
	IP   string
	Port uint32
}

// Listener is one Envoy listener that terminates the apps' mTLS.
type Listener struct {
	Name    string
	Address string
	Port    uint32
	// CertFile and KeyFile are absolute paths; CertPEM and KeyPEM their
	// contents, checked to be a matching pair, once LoadMaterial has run
	// (nil before, and always with file delivery). KeyPEM is secret: it
	// goes to Envoy by SDS and nowhere else (never into logs or the status
	// page).
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
	// Delivery is inline (default) or file.
	Delivery Delivery
	// EnvoyCertPath and EnvoyKeyPath are the files Envoy reads with file
	// delivery (default: CertFile and KeyFile).
	EnvoyCertPath, EnvoyKeyPath string
	Routes                      []*Route

	material *materialNodes // for LoadMaterial
	sni      *ServerNames   // built by Decode from Routes
}

// Route sends requests for a host (and path prefix) to an upstream, guarded
// by a fusion set.
type Route struct {
	Host       string
	PathPrefix string
	FusionSet  string
	Upstream   string
}

// Upstream is a backend cluster.
type Upstream struct {
	Name           string
	Endpoints      []Endpoint
	HTTP2          bool
	ConnectTimeout time.Duration
}

// NodeGroup maps an Envoy node cluster to the listeners it serves.
type NodeGroup struct {
	Cluster   string
	Listeners []string
	// Peers are the client certificate identities (URI SAN, DNS SAN or
	// subject CN) that may act as this group on the xDS channel. With
	// client certificates on, a group without peers is served to no one;
	// without them (loopback plaintext), a group with peers is served to no
	// one, since nobody can prove an identity.
	Peers []string
}

// Listener returns the listener called name.
func (g *Gateway) Listener(name string) *Listener {
	for _, l := range g.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Upstream returns the upstream called name.
func (g *Gateway) Upstream(name string) *Upstream {
	for _, u := range g.Upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// Files returns the files the section references (certificates and keys),
// so that a watcher reloads when one of them changes.
func (g *Gateway) Files() []string {
	var out []string
	for _, l := range g.Listeners {
		if l.Delivery != DeliveryFile {
			out = append(out, l.CertFile, l.KeyFile)
		}
	}
	return out
}

// FusionSets returns the ids of the fusion sets the routes of listener l use,
// in the order they first appear.
func (l *Listener) FusionSets() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range l.Routes {
		if !seen[r.FusionSet] {
			seen[r.FusionSet] = true
			out = append(out, r.FusionSet)
		}
	}
	return out
}

// Hosts returns the hosts of listener l guarded by fusion set id, in order.
func (l *Listener) Hosts(id string) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range l.Routes {
		if r.FusionSet == id && !seen[r.Host] {
			seen[r.Host] = true
			out = append(out, r.Host)
		}
	}
	return out
}
