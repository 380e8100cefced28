package envoyext

import (
	"bytes"
	"encoding/pem"
	"strings"
)

// HeaderXFCC is the x-forwarded-client-cert header. The control plane has
// Envoy set it from the connection (forward_client_cert_details:
// SANITIZE_SET), which replaces anything the client sent.
const HeaderXFCC = "x-forwarded-client-cert"

// maxXFCCChain caps how many certificates are read from an XFCC Chain value;
// the engine's max_chain_depth check needs only to see that there are more.
const maxXFCCChain = 16

// xfccChain returns the peer chain from the XFCC element Envoy appended for
// this connection (the last one), when it carries a Chain whose first
// certificate is leaf. ext_authz itself only ever sends the leaf
// (attributes.source.certificate), so without Chain a certificate issued by
// an intermediate needs the set's intermediates, and an over-long chain goes
// unnoticed; with set_current_client_cert_details.chain the engine sees what
// the client presented, as Caddy's does.
//
// The leaf stays authoritative: a Chain that does not start with the leaf
// Envoy reported is not this connection's and is ignored. The other
// certificates are only path-building candidates, never trust anchors, so a
// forged value could not make an untrusted leaf pass.
func xfccChain(header string, leaf []byte) ([][]byte, bool) {
	elem := lastXFCCElement(header)
	v, ok := xfccValue(elem, "Chain")
	if !ok || v == "" {
		return nil, false
	}
	text, err := unescapeEnvoyPEM(v)
	if err != nil {
		return nil, false
	}
	var chain [][]byte
	for len(text) > 0 && len(chain) <= maxXFCCChain {
		var block *pem.Block
		block, text = pem.Decode(text)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, false
		}
		chain = append(chain, block.Bytes)
	}
	if len(chain) == 0 || !bytes.Equal(chain[0], leaf) {
		return nil, false
	}
	return chain, true
}

// lastXFCCElement returns the last comma-separated element of an XFCC
// value, honouring double quotes (a Subject contains commas).
func lastXFCCElement(h string) string {
	start, quoted := 0, false
	for i := 0; i < len(h); i++ {
		switch h[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				start = i + 1
			}
		}
	}
	return h[start:]
}

// xfccValue returns the value of key (case-insensitive) in one XFCC element
// of semicolon-separated key=value pairs, without its quotes.
func xfccValue(elem, key string) (string, bool) {
	for len(elem) > 0 {
		// One pair: up to the next semicolon outside quotes.
		end, quoted := len(elem), false
		for i := 0; i < len(elem); i++ {
			if elem[i] == '\\' && quoted {
				i++
				continue
			}
			if elem[i] == '"' {
				quoted = !quoted
			} else if elem[i] == ';' && !quoted {
				end = i
				break
			}
		}
		pair := strings.TrimSpace(elem[:end])
		if end < len(elem) {
			elem = elem[end+1:]
		} else {
			elem = ""
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), key) {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`)
		}
		return v, true
	}
	return "", false
}
