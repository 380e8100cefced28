package caddymod

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// maxCertHeader bounds what is parsed from a certificate header: a chain of
// a few certificates is a few KiB.
const maxCertHeader = 64 << 10

// parseXFCC reads the client certificate chain from Envoy's
// x-forwarded-client-cert header:
//
//	By=<uri>;Hash=<hex>;Cert="<url-encoded PEM>";Chain="<url-encoded PEM>";Subject="...";URI=...
//
// Elements (one per proxy hop) are separated by commas. The last element is
// the one the nearest proxy, the trusted one, added about its own client;
// earlier elements came from further away and may be forged. Chain (the
// whole chain, leaf first) is preferred to Cert (the leaf).
func parseXFCC(values []string) ([][]byte, error) {
	v := strings.Join(values, ",")
	if len(v) > maxCertHeader {
		return nil, fmt.Errorf("header longer than %d bytes", maxCertHeader)
	}
	elems, err := splitXFCC(v)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, errors.New("empty header")
	}
	last := elems[len(elems)-1]
	var cert, chain string
	for _, kv := range last {
		switch strings.ToLower(kv[0]) {
		case "cert":
			cert = kv[1]
		case "chain":
			chain = kv[1]
		}
	}
	src := chain
	if src == "" {
		src = cert
	}
	if src == "" {
		return nil, errors.New("no Cert or Chain in the last element")
	}
	pemText, err := url.PathUnescape(src)
	if err != nil {
		return nil, fmt.Errorf("URL-decoding the certificate: %w", err)
	}
	return decodePEMCerts(pemText)
}

// splitXFCC splits an XFCC value into elements of key/value pairs, honouring
// double-quoted values (which may hold ',', ';' and '=' and escape '"' with
// a backslash).
func splitXFCC(v string) ([][][2]string, error) {
	var (
		elems [][][2]string
		pairs [][2]string
		key   strings.Builder
		val   strings.Builder
		inKey = true
		quote bool
	)
	flushPair := func() error {
		k := strings.TrimSpace(key.String())
		value := val.String()
		if !quote {
			value = strings.TrimSpace(value)
		}
		key.Reset()
		val.Reset()
		inKey = true
		if k == "" && value == "" {
			return nil
		}
		if k == "" {
			return errors.New("value without a key")
		}
		pairs = append(pairs, [2]string{k, value})
		return nil
	}
	flushElem := func() {
		if len(pairs) > 0 {
			elems = append(elems, pairs)
		}
		pairs = nil
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote:
			switch c {
			case '\\':
				if i+1 < len(v) {
					i++
					val.WriteByte(v[i])
				}
			case '"':
				quote = false
			default:
				val.WriteByte(c)
			}
		case inKey && c == '=':
			inKey = false
		case inKey && (c == ';' || c == ','):
			if strings.TrimSpace(key.String()) != "" {
				return nil, fmt.Errorf("key %q without a value", strings.TrimSpace(key.String()))
			}
			if c == ',' {
				flushElem()
			}
		case inKey:
			key.WriteByte(c)
		case c == '"' && strings.TrimSpace(val.String()) == "":
			val.Reset()
			quote = true
		case c == ';':
			if err := flushPair(); err != nil {
				return nil, err
			}
		case c == ',':
			if err := flushPair(); err != nil {
				return nil, err
			}
			flushElem()
		default:
			val.WriteByte(c)
		}
	}
	if quote {
		return nil, errors.New("unterminated quoted value")
	}
	if !inKey {
		if err := flushPair(); err != nil {
			return nil, err
		}
	} else if strings.TrimSpace(key.String()) != "" {
		return nil, fmt.Errorf("key %q without a value", strings.TrimSpace(key.String()))
	}
	flushElem()
	return elems, nil
}

// parsePEMHeader reads a certificate chain from a header holding PEM,
// URL-encoded (nginx's $ssl_client_escaped_cert, AWS ALB) or plain with its
// line breaks folded into spaces or tabs.
func parsePEMHeader(values []string) ([][]byte, error) {
	v := strings.Join(values, "\n")
	if len(v) > maxCertHeader {
		return nil, fmt.Errorf("header longer than %d bytes", maxCertHeader)
	}
	if strings.Contains(v, "%") {
		u, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("URL-decoding the certificate: %w", err)
		}
		v = u
	}
	return decodePEMCerts(v)
}

const (
	pemBegin = "-----BEGIN CERTIFICATE-----"
	pemEnd   = "-----END CERTIFICATE-----"
)

// decodePEMCerts returns the DER of every CERTIFICATE block in s. It is
// lenient about whitespace inside a block (proxies fold line breaks) and
// strict about everything else; parsing the DER is the engine's job.
func decodePEMCerts(s string) ([][]byte, error) {
	var out [][]byte
	for {
		i := strings.Index(s, pemBegin)
		if i < 0 {
			break
		}
		s = s[i+len(pemBegin):]
		j := strings.Index(s, pemEnd)
		if j < 0 {
			return nil, errors.New("certificate block without an END line")
		}
		body := strings.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\n', '\r':
				return -1
			}
			return r
		}, s[:j])
		der, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: invalid base64: %w", len(out)+1, err)
		}
		out = append(out, der)
		s = s[j+len(pemEnd):]
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}
