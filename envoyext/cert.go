package envoyext

import (
	"errors"
	"fmt"

	"github.com/mccgate/mcc/adapter"
)

// errBadEscape and friends describe why attributes.source.certificate could
// not be read. They end up in the event's reasonData, so they name the
// problem without echoing the attacker-controlled input.
var (
	errBadEscape = adapter.ErrURLEscape
	errNotPEM    = adapter.ErrNoPEMCertificate
	errTrailing  = errors.New("peer certificate has more than one certificate; Envoy sends the leaf only")
)

// decodePeerCertificate reverses Envoy's urlEncodedPemEncodedPeerCertificate
// by the rule every forwarded certificate is read by (adapter.ParsePEMHeader:
// exactly the five URL escapes Envoy writes, then CERTIFICATE blocks), so a
// value that did not come from Envoy's encoder is reported as malformed
// instead of being silently reinterpreted, and the same value reads the same
// as a Caddy cert_header in the pem format. Envoy sends the leaf alone, so
// exactly one certificate is taken. The caller has capped the size.
func decodePeerCertificate(s string) ([]byte, error) {
	certs, err := adapter.ParsePEMHeader([]string{s}, adapter.CertHeaderOptions{MaxBytes: max(len(s), 1)})
	if err != nil {
		return nil, fmt.Errorf("peer certificate: %w", err)
	}
	if len(certs) != 1 {
		return nil, errTrailing
	}
	return certs[0], nil
}
