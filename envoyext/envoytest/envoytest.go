// Package envoytest builds ext_authz and access-log messages shaped exactly as
// Envoy builds them, for tests and load generators that stand in for Envoy.
//
// Shapes follow Envoy's source: CheckRequestUtils::setAttrContextPeer puts the
// leaf (only the leaf) in attributes.source.certificate as
// urlEncodedPemEncodedPeerCertificate, the headers map has lower-case keys, the
// source and destination addresses are socket addresses, and tls_session.sni is
// the only TLS-session field.
package envoytest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// envoyPEMEscapes are the five replacements Envoy applies to the PEM text in
// ConnectionInfoImplBase::urlEncodedPemEncodedPeerCertificate, in its order.
var envoyPEMEscapes = strings.NewReplacer(
	"\n", "%0A",
	" ", "%20",
	"+", "%2B",
	"/", "%2F",
	"=", "%3D",
)

// EncodePeerCertificate returns der as Envoy sends it in
// attributes.source.certificate: PEM, then the five URL escapes.
func EncodePeerCertificate(der []byte) string {
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return envoyPEMEscapes.Replace(string(p))
}

// Check describes one HTTP request as Envoy's ext_authz filter sees it.
type Check struct {
	FusionSet string // context_extensions["fusion_set"]; omitted when ""
	LeafDER   []byte // peer leaf; no certificate field when nil
	// Chain, when set, is the chain the client presented (leaf first; it
	// also provides the leaf when LeafDER is nil). Envoy then also writes an
	// x-forwarded-client-cert header as the control plane configures it
	// (SANITIZE_SET with hash, cert, chain, subject and URI).
	Chain [][]byte
	// Certificate, when set, is sent verbatim instead of encoding LeafDER
	// (for garbage and hostile encodings).
	Certificate string
	SourceAddr  string // "ip:port" of the downstream peer
	DestAddr    string // "ip:port" of the listener
	SNI         string
	Host        string
	Method      string
	Path        string
	RequestID   string
	// Headers are extra request headers; keys are lower-cased as Envoy does.
	Headers map[string]string
	// ContextExtensions are extra context extensions.
	ContextExtensions map[string]string
}

// CheckRequest builds the CheckRequest Envoy would send for c.
func CheckRequest(c Check) *authv3.CheckRequest {
	headers := map[string]string{
		":authority": c.Host,
		":method":    c.Method,
		":path":      c.Path,
		":scheme":    "https",
	}
	if c.RequestID != "" {
		headers["x-request-id"] = c.RequestID
	}
	for k, v := range c.Headers {
		headers[strings.ToLower(k)] = v
	}
	ext := map[string]string{}
	for k, v := range c.ContextExtensions {
		ext[k] = v
	}
	if c.FusionSet != "" {
		ext["fusion_set"] = c.FusionSet
	}
	if c.LeafDER == nil && len(c.Chain) > 0 {
		c.LeafDER = c.Chain[0]
	}
	if len(c.Chain) > 0 {
		headers["x-forwarded-client-cert"] = XFCC(c.Chain)
	}
	cert := c.Certificate
	if cert == "" && c.LeafDER != nil {
		cert = EncodePeerCertificate(c.LeafDER)
	}
	principal := Principal(c.LeafDER)
	attrs := &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:     SocketAddress(c.SourceAddr),
			Principal:   principal,
			Certificate: cert,
		},
		Destination: &authv3.AttributeContext_Peer{
			Address: SocketAddress(c.DestAddr),
		},
		Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       c.RequestID,
				Method:   c.Method,
				Headers:  headers,
				Path:     c.Path,
				Host:     c.Host,
				Scheme:   "https",
				Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: ext,
	}
	if c.SNI != "" {
		attrs.TlsSession = &authv3.AttributeContext_TLSSession{Sni: c.SNI}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// XFCC is the x-forwarded-client-cert value Envoy writes for a connection
// whose client presented chain, with forward_client_cert_details
// SANITIZE_SET and set_current_client_cert_details {subject, cert, chain,
// uri}: Hash, Cert, Chain, Subject, URI, in Envoy's order.
func XFCC(chain [][]byte) string {
	var all []byte
	for _, der := range chain {
		all = append(all, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	sum := sha256.Sum256(chain[0])
	parts := []string{
		"Hash=" + hex.EncodeToString(sum[:]),
		`Cert="` + EncodePeerCertificate(chain[0]) + `"`,
		`Chain="` + envoyPEMEscapes.Replace(string(all)) + `"`,
	}
	if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
		parts = append(parts, `Subject="`+leaf.Subject.String()+`"`)
		for _, u := range leaf.URIs {
			parts = append(parts, "URI="+u.String())
		}
	}
	return strings.Join(parts, ";")
}

// Principal is what Envoy puts in source.principal: the first URI SAN, else
// the first DNS SAN, else the Subject; "" when der does not parse.
func Principal(der []byte) string {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return ""
	}
	switch {
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	}
	return cert.Subject.String()
}

// SocketAddress builds an Envoy socket address from "ip:port"; nil for "".
func SocketAddress(hostport string) *corev3.Address {
	if hostport == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		panic("envoytest: bad address " + hostport + ": " + err.Error())
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ap.Addr().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}

// Connection describes one downstream TCP connection as a listener-level
// tcp_grpc access log reports it when the connection closes.
type Connection struct {
	RemoteAddr    string // downstream_remote_address
	LocalAddr     string // downstream_local_address
	SNI           string // tls_properties.tls_sni_hostname
	FailureReason string // downstream_transport_failure_reason ("" = clean close)
	CustomTags    map[string]string
}

// HandshakeFailure is a typical BoringSSL failure string as Envoy reports it
// when the client presented no certificate.
const HandshakeFailure = "TLS_error:|268435648:SSL routines:OPENSSL_internal:PEER_DID_NOT_RETURN_A_CERTIFICATE:TLS_error_end"

// TCPEntry builds the TCPAccessLogEntry Envoy would log for c.
func TCPEntry(c Connection) *accesslogdatav3.TCPAccessLogEntry {
	common := &accesslogdatav3.AccessLogCommon{
		DownstreamRemoteAddress:          SocketAddress(c.RemoteAddr),
		DownstreamDirectRemoteAddress:    SocketAddress(c.RemoteAddr),
		DownstreamLocalAddress:           SocketAddress(c.LocalAddr),
		DownstreamTransportFailureReason: c.FailureReason,
		CustomTags:                       c.CustomTags,
		AccessLogType:                    accesslogdatav3.AccessLogType_TcpConnectionEnd,
	}
	if c.SNI != "" {
		common.TlsProperties = &accesslogdatav3.TLSProperties{TlsSniHostname: c.SNI}
	}
	return &accesslogdatav3.TCPAccessLogEntry{
		CommonProperties:     common,
		ConnectionProperties: &accesslogdatav3.ConnectionProperties{},
	}
}

// TCPLogs wraps entries in a StreamAccessLogsMessage. Envoy sends the
// identifier only on a stream's first message: pass node = "" afterwards.
func TCPLogs(node, logName string, entries ...*accesslogdatav3.TCPAccessLogEntry) *accesslogv3.StreamAccessLogsMessage {
	m := &accesslogv3.StreamAccessLogsMessage{
		LogEntries: &accesslogv3.StreamAccessLogsMessage_TcpLogs{
			TcpLogs: &accesslogv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: entries},
		},
	}
	if node != "" || logName != "" {
		m.Identifier = &accesslogv3.StreamAccessLogsMessage_Identifier{
			Node:    &corev3.Node{Id: node, Cluster: "edge"},
			LogName: logName,
		}
	}
	return m
}
