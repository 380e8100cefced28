package envoyext

import (
	"encoding/pem"
	"errors"
	"fmt"
)

// errNotPEM and friends describe why attributes.source.certificate could not
// be read. They end up in the event's reasonData, so they name the problem
// without echoing the attacker-controlled input.
var (
	errBadEscape = errors.New("peer certificate has a URL escape Envoy never writes")
	errNotPEM    = errors.New("peer certificate is not PEM")
	errNotCert   = errors.New("peer certificate PEM block is not a CERTIFICATE")
	errTrailing  = errors.New("peer certificate has data after the PEM block")
)

// decodePeerCertificate reverses Envoy's urlEncodedPemEncodedPeerCertificate:
// Envoy PEM-encodes the leaf and then replaces exactly five characters
// ("\n" -> %0A, " " -> %20, "+" -> %2B, "/" -> %2F, "=" -> %3D). A general URL
// decoder would also turn "+" into a space or accept escapes Envoy never
// writes; being exact means a value that did not come from Envoy's encoder is
// reported as malformed instead of being silently reinterpreted.
func decodePeerCertificate(s string) ([]byte, error) {
	buf, err := unescapeEnvoyPEM(s)
	if err != nil {
		return nil, err
	}
	block, rest := pem.Decode(buf)
	switch {
	case block == nil:
		return nil, errNotPEM
	case block.Type != "CERTIFICATE":
		return nil, fmt.Errorf("%w (got %q)", errNotCert, truncate(block.Type, 32))
	case len(trimSpace(rest)) != 0:
		// Envoy sends the leaf only; a second block is not Envoy's doing.
		return nil, errTrailing
	}
	return block.Bytes, nil
}

// unescapeEnvoyPEM undoes the five replacements, refusing any other escape.
func unescapeEnvoyPEM(s string) ([]byte, error) {
	buf := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			buf = append(buf, c)
			continue
		}
		if i+2 >= len(s) {
			return nil, errBadEscape
		}
		switch esc := [2]byte{upper(s[i+1]), upper(s[i+2])}; esc {
		case [2]byte{'0', 'A'}:
			buf = append(buf, '\n')
		case [2]byte{'2', '0'}:
			buf = append(buf, ' ')
		case [2]byte{'2', 'B'}:
			buf = append(buf, '+')
		case [2]byte{'2', 'F'}:
			buf = append(buf, '/')
		case [2]byte{'3', 'D'}:
			buf = append(buf, '=')
		default:
			return nil, errBadEscape
		}
		i += 2
	}
	return buf, nil
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
