package envoyext

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// HeaderXFCC is the x-forwarded-client-cert header. The control plane has
// Envoy set it from the connection (forward_client_cert_details:
// SANITIZE_SET), which replaces anything the client sent.
const HeaderXFCC = "x-forwarded-client-cert"

// maxXFCCChain caps how many certificates are kept from an XFCC Chain value;
// the engine's max_chain_depth check needs only to see that there are more.
const maxXFCCChain = 16

// errNoXFCCChain means the XFCC header holds nothing usable for this
// connection (no Cert or Chain, or a chain that does not start with the
// leaf Envoy reported): the leaf alone is used, nothing is refused.
var errNoXFCCChain = errors.New("no usable chain in x-forwarded-client-cert")

// xfccChain returns the peer chain from the x-forwarded-client-cert header
// Envoy set for this connection, when it carries a Chain whose first
// certificate is leaf. ext_authz itself only ever sends the leaf
// (attributes.source.certificate), so without Chain a certificate issued by
// an intermediate needs the set's intermediates, and an over-long chain goes
// unnoticed; with set_current_client_cert_details.chain the engine sees what
// the client presented, as Caddy's does.
//
// The header is read by the rule both gateways share (adapter.SelectXFCC):
// one header line no longer than the cap (DefaultMaxXFCCBytes), and one
// element unless the operator allows several (then the right-most, the one
// Envoy appended). Envoy in SANITIZE_SET mode writes exactly one element, so
// a second one means someone else wrote part of the header. A refused
// header is an *adapter.CertHeaderError whose Reason is the decision's.
//
// The leaf stays authoritative: a Chain that does not start with the leaf
// Envoy reported is not this connection's and is ignored (errNoXFCCChain).
// The other certificates are only path-building candidates, never trust
// anchors, so a forged value could not make an untrusted leaf pass.
func (s *Service) xfccChain(values []string, leaf []byte) ([][]byte, error) {
	elem, err := adapter.SelectXFCC(values, adapter.CertHeaderOptions{
		MaxBytes:              s.limits.maxXFCCBytes,
		AllowMultipleElements: s.limits.xfccMultipleElements,
	})
	if err != nil {
		return nil, err
	}
	if c, _ := elem.Get("Chain"); c == "" {
		// Envoy was told not to forward the chain (only Hash, Subject, ...):
		// nothing to read, nothing wrong.
		return nil, errNoXFCCChain
	}
	chain, err := adapter.XFCCCerts(elem)
	if err != nil {
		return nil, err
	}
	for i, der := range chain {
		if len(der) > s.limits.maxCertificateBytes {
			return nil, &adapter.CertHeaderError{Reason: threat.ReasonCertMalformed,
				Err: fmt.Errorf("x-forwarded-client-cert: certificate %d is %d bytes, more than the %d allowed", i+1, len(der), s.limits.maxCertificateBytes)}
		}
	}
	if !bytes.Equal(chain[0], leaf) {
		return nil, errNoXFCCChain
	}
	if len(chain) > maxXFCCChain+1 {
		chain = chain[:maxXFCCChain+1]
	}
	return chain, nil
}

// ForwardedChain is how Check reads the client's chain: pemCert is
// attributes.source.certificate as Envoy encodes it, xfcc the
// x-forwarded-client-cert header lines. It returns the chain the engine is
// given and the reason the request is refused for (threat.ReasonNone when
// nothing is). It is exported so that the differential fuzz test in parity
// can hold it against what Caddy reads from the same header.
func (s *Service) ForwardedChain(pemCert string, xfcc []string) ([][]byte, threat.Reason) {
	var r fusion.Request
	s.peerChain(&r, pemCert, xfcc)
	return r.PeerCertificates, r.Reason
}
