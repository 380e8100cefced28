package adapter

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/mccgate/mcc/threat"
)

// DefaultMaxCertHeaderBytes caps a forwarded-certificate header (all its
// lines together) before anything parses it: a chain of a few certificates
// is a few KiB, and the cap keeps a hostile value from costing memory and
// CPU in every gateway.
const DefaultMaxCertHeaderBytes = 64 << 10

// CertHeaderOptions say how much of a forwarded-certificate header is
// accepted.
type CertHeaderOptions struct {
	// MaxBytes caps the header's total size (0: DefaultMaxCertHeaderBytes).
	MaxBytes int
	// AllowMultipleElements accepts an XFCC value with several elements
	// (proxies in APPEND_FORWARD mode) and takes the right-most one: the
	// element the nearest proxy, the trusted one, added about its own
	// client. Elements further left came from further away and are not
	// read. Off by default: a single trusted proxy in SANITIZE_SET mode
	// sends exactly one element, so more than one means someone else wrote
	// part of the header.
	AllowMultipleElements bool
}

func (o CertHeaderOptions) maxBytes() int {
	if o.MaxBytes > 0 {
		return o.MaxBytes
	}
	return DefaultMaxCertHeaderBytes
}

// CertHeaderError is a refused forwarded-certificate header. Reason is the
// reason code the gateway reports:
//
//   - SPOOFED_CERT_HEADER: the header has more than one line, or an XFCC
//     value has more than one element while that is not allowed. A trusted
//     proxy that sets the header writes it once; a second value means the
//     proxy passed on one the client sent, and nothing tells which is whose.
//   - CERT_MALFORMED: the header is too long, or it cannot be read.
//
// The message names what is wrong, never the header's value.
type CertHeaderError struct {
	Reason threat.Reason
	Err    error
}

func (e *CertHeaderError) Error() string { return e.Err.Error() }
func (e *CertHeaderError) Unwrap() error { return e.Err }

func spoofed(format string, args ...any) error {
	return &CertHeaderError{Reason: threat.ReasonSpoofedCertHeader, Err: fmt.Errorf(format, args...)}
}

func malformed(err error) error {
	var ce *CertHeaderError
	if errors.As(err, &ce) {
		return err
	}
	return &CertHeaderError{Reason: threat.ReasonCertMalformed, Err: err}
}

// checkValues applies the rules common to every format: one line, size cap.
func checkValues(values []string, o CertHeaderOptions) (string, error) {
	if len(values) == 0 {
		return "", malformed(errors.New("empty header"))
	}
	if len(values) > 1 {
		return "", spoofed("header sent %d times; a trusted proxy sets it once", len(values))
	}
	if limit := o.maxBytes(); len(values[0]) > limit {
		return "", malformed(fmt.Errorf("header longer than %d bytes", limit))
	}
	return values[0], nil
}

// XFCCElement is one element of an x-forwarded-client-cert value: its
// key=value pairs in order, values unquoted and unescaped.
type XFCCElement [][2]string

// Get returns the value of key (case-insensitive) in the element.
func (e XFCCElement) Get(key string) (string, bool) {
	for _, kv := range e {
		if strings.EqualFold(kv[0], key) {
			return kv[1], true
		}
	}
	return "", false
}

// SelectXFCC reads an x-forwarded-client-cert header (values are its header
// lines) and returns the element that describes the client:
//
//	By=<uri>;Hash=<hex>;Cert="<url-encoded PEM>";Chain="<url-encoded PEM>";Subject="...";URI=...
//
// Elements are separated by commas outside double quotes (a Subject holds
// commas); quoted values escape '"' and '\' with a backslash. The header
// must be one line no longer than the cap, and one element unless
// AllowMultipleElements, which takes the right-most. Errors are
// *CertHeaderError.
func SelectXFCC(values []string, o CertHeaderOptions) (XFCCElement, error) {
	v, err := checkValues(values, o)
	if err != nil {
		return nil, err
	}
	elems, err := splitXFCC(v)
	if err != nil {
		return nil, malformed(err)
	}
	switch {
	case len(elems) == 0:
		return nil, malformed(errors.New("empty header"))
	case len(elems) > 1 && !o.AllowMultipleElements:
		return nil, spoofed("%d XFCC elements; one expected (allow_multiple_elements takes the right-most)", len(elems))
	}
	return elems[len(elems)-1], nil
}

// XFCCCerts returns the certificates (DER, leaf first) of an XFCC element:
// its Chain when present (the whole chain, set_current_client_cert_details
// chain), else its Cert (the leaf). Errors are *CertHeaderError.
func XFCCCerts(e XFCCElement) ([][]byte, error) {
	src, _ := e.Get("Chain")
	if src == "" {
		src, _ = e.Get("Cert")
	}
	if src == "" {
		return nil, malformed(errors.New("no Cert or Chain in the element"))
	}
	pemText, err := UnescapePEM(src)
	if err != nil {
		return nil, malformed(fmt.Errorf("URL-decoding the certificate: %w", err))
	}
	certs, err := DecodePEMCerts(pemText)
	if err != nil {
		return nil, malformed(err)
	}
	return certs, nil
}

// ParseXFCC is SelectXFCC then XFCCCerts: the client chain an XFCC header
// forwards.
func ParseXFCC(values []string, o CertHeaderOptions) ([][]byte, error) {
	e, err := SelectXFCC(values, o)
	if err != nil {
		return nil, err
	}
	return XFCCCerts(e)
}

// ParsePEMHeader reads a certificate chain from a header holding PEM,
// URL-encoded (nginx's $ssl_client_escaped_cert, AWS ALB) or plain with its
// line breaks folded into spaces or tabs. The header must be one line no
// longer than the cap. Errors are *CertHeaderError.
func ParsePEMHeader(values []string, o CertHeaderOptions) ([][]byte, error) {
	v, err := checkValues(values, o)
	if err != nil {
		return nil, err
	}
	if strings.Contains(v, "%") {
		u, err := UnescapePEM(v)
		if err != nil {
			return nil, malformed(fmt.Errorf("URL-decoding the certificate: %w", err))
		}
		v = u
	}
	certs, err := DecodePEMCerts(v)
	if err != nil {
		return nil, malformed(err)
	}
	return certs, nil
}

// ErrURLEscape is a percent escape other than the five UnescapePEM
// undoes, or one cut short.
var ErrURLEscape = errors.New("URL escape other than the five proxies write for PEM (line break, space, plus, slash, equals)")

// UnescapePEM undoes the URL encoding proxies apply to PEM, the one rule
// for every forwarded certificate at both gateways: Envoy (the XFCC Cert
// and Chain values, and ext_authz's attributes.source.certificate) and
// nginx ($ssl_client_escaped_cert) replace exactly "\n", " ", "+", "/" and
// "=" with %0A, %20, %2B, %2F and %3D; the hex may be in either case. Any
// other escape is refused (ErrURLEscape) rather than decoded: a general URL
// decoder accepts values no proxy writes (%41 for "A", %00), so the same
// header would mean different things to different readers. A "+" stays a
// "+": it is base64, not a space.
func UnescapePEM(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return "", ErrURLEscape
		}
		switch [2]byte{upperHex(s[i+1]), upperHex(s[i+2])} {
		case [2]byte{'0', 'A'}:
			b.WriteByte('\n')
		case [2]byte{'2', '0'}:
			b.WriteByte(' ')
		case [2]byte{'2', 'B'}:
			b.WriteByte('+')
		case [2]byte{'2', 'F'}:
			b.WriteByte('/')
		case [2]byte{'3', 'D'}:
			b.WriteByte('=')
		default:
			return "", ErrURLEscape
		}
		i += 2
	}
	return b.String(), nil
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// splitXFCC splits an XFCC value into elements of key/value pairs, honouring
// double-quoted values (which may hold ',', ';' and '=' and escape '"' with
// a backslash).
func splitXFCC(v string) ([]XFCCElement, error) {
	var (
		elems []XFCCElement
		pairs XFCCElement
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
				return nil, fmt.Errorf("key %q without a value", truncate(strings.TrimSpace(key.String()), 64))
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
		return nil, fmt.Errorf("key %q without a value", truncate(strings.TrimSpace(key.String()), 64))
	}
	flushElem()
	return elems, nil
}

// truncate keeps error messages (which reach events) short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

const (
	pemBegin = "-----BEGIN CERTIFICATE-----"
	pemEnd   = "-----END CERTIFICATE-----"
)

// ErrNoPEMCertificate: the value holds no CERTIFICATE block.
var ErrNoPEMCertificate = errors.New("no PEM certificate found")

// DecodePEMCerts returns the DER of every CERTIFICATE block in s. It is
// lenient about whitespace inside a block (proxies fold line breaks) and
// strict about everything else; parsing the DER is the policy core's job.
func DecodePEMCerts(s string) ([][]byte, error) {
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
		return nil, ErrNoPEMCertificate
	}
	return out, nil
}
