package translate

import (
	"fmt"
	"net"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/xds/gateway"
)

// ValidationContext is how Envoy checks a fusion set's client certificates
// in the handshake. It travels by SDS, so a new CA bundle or CRL reaches
// Envoy without touching the listener (no drain, no reconnect).
//
// Defense: chain to the set's CA, exactly one identity (URI SAN exact), the
// SPKI pins if any, and the CRL; a failure ends the handshake. Detection:
// the same CA and CRL (so Envoy still asks for a certificate and records
// whether it validated) but ACCEPT_UNTRUSTED and no identity or pin rules,
// so every handshake completes and ext_authz reports and decides.
func ValidationContext(s *FusionSet) (*tlsv3.CertificateValidationContext, error) {
	if len(s.CAPEM) == 0 {
		return nil, fmt.Errorf("fusion set %q: no trusted CA: Envoy would not ask for a client certificate", s.ID)
	}
	vc := &tlsv3.CertificateValidationContext{TrustedCa: inlineBytes(s.CAPEM)}
	if len(s.CRLPEM) > 0 {
		vc.Crl = inlineBytes(s.CRLPEM)
		// App certificates come straight from the set's CA; without this,
		// BoringSSL wants a CRL for every CA in the chain.
		vc.OnlyVerifyLeafCertCrl = true
	}
	switch s.Mode {
	case threat.ModeDefense:
		if s.IdentityURI == "" {
			return nil, fmt.Errorf("fusion set %q: no identity URI", s.ID)
		}
		vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s.IdentityURI}},
		}}
		vc.VerifyCertificateSpki = append([]string(nil), s.SPKIPins...)
	case threat.ModeDetection:
		vc.TrustChainVerification = tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
	default:
		return nil, fmt.Errorf("fusion set %q: unknown mode %q", s.ID, s.Mode)
	}
	return vc, nil
}

// validationSecret is the SDS secret mcc-validation-<set>.
func validationSecret(s *FusionSet) (*tlsv3.Secret, error) {
	vc, err := ValidationContext(s)
	if err != nil {
		return nil, err
	}
	return &tlsv3.Secret{
		Name: ValidationSecretName(s.ID),
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc},
	}, nil
}

// serverCertSecret is the SDS secret mcc-server-cert-<listener>. Inline
// delivery carries the certificate and key; file delivery names the files
// on the Envoy host, so no private key crosses the xDS channel, and Envoy
// re-reads them when they change.
func serverCertSecret(l *gateway.Listener) *tlsv3.Secret {
	tc := &tlsv3.TlsCertificate{
		CertificateChain: inlineBytes(l.CertPEM),
		PrivateKey:       inlineBytes(l.KeyPEM),
	}
	if l.Delivery == gateway.DeliveryFile {
		tc = &tlsv3.TlsCertificate{
			CertificateChain: fileSource(l.EnvoyCertPath),
			PrivateKey:       fileSource(l.EnvoyKeyPath),
		}
		// A pair in one directory is watched there: a swap of both by
		// rename (a Kubernetes secret mount's ..data link, certbot's live
		// directory) is then read as one consistent pair. Apart, Envoy
		// watches each file's directory by itself.
		if dir := filepath.Dir(l.EnvoyCertPath); dir == filepath.Dir(l.EnvoyKeyPath) {
			tc.WatchedDirectory = &corev3.WatchedDirectory{Path: dir}
		}
	}
	return &tlsv3.Secret{
		Name: ServerCertSecretName(l.Name),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: tc},
	}
}

// upstreamTLS is the transport socket with which Envoy reaches a control
// service (mcc authz) over mTLS: its client certificate, the CA it trusts
// for the server, and the name the server's certificate must carry. gRPC
// servers want ALPN h2.
func upstreamTLS(p *packer, t *gateway.UpstreamTLS) *corev3.TransportSocket {
	san := &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: t.ServerName}},
	}
	sni := t.ServerName
	if net.ParseIP(t.ServerName) != nil {
		san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		sni = "" // SNI carries names only
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			TlsCertificates: []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(t.CertFile),
				PrivateKey:       fileSource(t.KeyFile),
			}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 fileSource(t.CAFile),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
			}},
			AlpnProtocols: []string{"h2"},
		},
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: p.any(ctx)},
	}
}

// downstreamTLS is the TLS context of fusion set s's filter chain on
// listener l: certificate and validation context both by SDS name.
func downstreamTLS(l *gateway.Listener, s *FusionSet) *tlsv3.DownstreamTlsContext {
	return &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{
				Name: ServerCertSecretName(l.Name), SdsConfig: adsSource(),
			}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: ValidationSecretName(s.ID), SdsConfig: adsSource()},
			},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
		// Detection lets a client without a certificate through: the
		// request reaches ext_authz, which reports NO_CLIENT_CERT.
		RequireClientCertificate: wrapperspb.Bool(s.Mode == threat.ModeDefense),
	}
}
