package caddymod

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("fusion_set", parseHandlerDirective)
	// Before the auth directives (and so before reverse_proxy): users need
	// no `order` line.
	httpcaddyfile.RegisterDirectiveOrder("fusion_set", httpcaddyfile.Before, "basic_auth")
}

func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalCaddyfile parses the fusion_set directive:
//
//	fusion_set [<matcher>] <id> {
//		cert_header <Header-Name> [xfcc|pem] {
//			max_size <size>            # default 64KiB
//			allow_multiple_elements    # xfcc only
//		}
//	}
//
// cert_header takes the client certificate from a header set by a
// TLS-terminating proxy, believed only when the request comes from the
// server's trusted_proxies. The header must come as one line no longer than
// max_size; an XFCC value must hold one element unless
// allow_multiple_elements, which reads the right-most one (the element the
// nearest, trusted, proxy added).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.NextArg() {
		return d.Err("fusion_set: missing fusion set id")
	}
	h.FusionSet = d.Val()
	if d.NextArg() {
		return d.Errf("fusion_set %s: unexpected argument %q", h.FusionSet, d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "cert_header":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("fusion_set %s: cert_header takes a header name and optionally xfcc or pem", h.FusionSet)
			}
			h.CertHeader = args[0]
			h.CertHeaderFormat = CertHeaderXFCC
			if len(args) == 2 {
				switch args[1] {
				case CertHeaderXFCC, CertHeaderPEM:
					h.CertHeaderFormat = args[1]
				default:
					return d.Errf("fusion_set %s: cert_header format %q: want xfcc or pem", h.FusionSet, args[1])
				}
			}
			for inner := d.Nesting(); d.NextBlock(inner); {
				switch d.Val() {
				case "max_size":
					var v string
					if !d.AllArgs(&v) {
						return d.Errf("fusion_set %s: cert_header max_size takes one size (e.g. 64KiB)", h.FusionSet)
					}
					n, err := parseSize(v)
					if err != nil {
						return d.Errf("fusion_set %s: cert_header max_size: %v", h.FusionSet, err)
					}
					if n > maxCertHeaderLimit {
						return d.Errf("fusion_set %s: cert_header max_size: at most %d bytes", h.FusionSet, maxCertHeaderLimit)
					}
					h.CertHeaderMaxSize = int(n)
				case "allow_multiple_elements":
					if d.NextArg() {
						return d.Errf("fusion_set %s: allow_multiple_elements takes no value", h.FusionSet)
					}
					if h.CertHeaderFormat != CertHeaderXFCC {
						return d.Errf("fusion_set %s: allow_multiple_elements is for the xfcc format only", h.FusionSet)
					}
					h.CertHeaderAllowMultipleElements = true
				default:
					return d.Errf("fusion_set %s: cert_header: unrecognized setting %q (want max_size or allow_multiple_elements)", h.FusionSet, d.Val())
				}
			}
		default:
			return d.Errf("fusion_set %s: unrecognized setting %q", h.FusionSet, d.Val())
		}
	}
	return nil
}

// maxCertHeaderLimit bounds cert_header max_size: a proxy's header larger
// than this is no certificate chain, and Caddy reads no bigger headers by
// default anyway.
const maxCertHeaderLimit = 1 << 20

var _ caddyfile.Unmarshaler = (*Handler)(nil)
