package caddymod

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mccgate/mcc/adapter"
)

// headerXFF is the one header the client address is read from, whatever
// the server's client_ip_headers say: both gateways read X-Forwarded-For,
// so they agree on who the client is.
const headerXFF = "X-Forwarded-For"

// clientIP returns the client address by the rule both gateways share
// (adapter.ClientIP): the right-most X-Forwarded-For address that is not a
// trusted proxy, walking from the connection's peer. Caddy's own client_ip
// var takes the LEFT-most address unless trusted_proxies_strict is set, which
// lets a client behind a trusted proxy choose the address that gets scored
// and banned; so the var is not trusted here, and it is set to the result
// for the handlers, matchers and access log entry that come after this one.
//
// The trusted ranges are the server's trusted_proxies. Caddy keeps the
// loaded source unexported, so each hop is asked to the server itself:
// caddyhttp.PrepareRequest on a probe request from that address sets the
// trusted_proxy var exactly as Caddy decides it for a connection, with
// static and dynamic sources alike. This costs one probe per trusted hop,
// only on requests whose peer is a trusted proxy and that carry the header.
func clientIP(r *http.Request, vars map[string]any) string {
	caddyIP, _ := vars[caddyhttp.ClientIPVarKey].(string)
	trusted, _ := vars[caddyhttp.TrustedProxyVarKey].(bool)
	if !trusted {
		// Caddy's var is then the peer's address.
		return caddyIP
	}
	ctx := r.Context()
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	xff := r.Header.Values(headerXFF)
	var ip netip.Addr
	if srv != nil {
		// A trusted peer without an IP address (a Unix socket under
		// trusted_proxies_unix) starts the walk at the header.
		// The peer's RemoteAddr is read by the rule for an entry
		// ("ip:port", unmapped, no zone); a Unix socket gives no address.
		peer, _ := adapter.ParseForwardedAddr(r.RemoteAddr)
		ip = adapter.WalkForwardedFor(peer, xff, serverTrust{srv: srv, ctx: ctx}.trusted)
	}
	if !ip.IsValid() {
		return caddyIP
	}
	s := ip.String()
	if s != caddyIP {
		caddyhttp.SetVar(ctx, caddyhttp.ClientIPVarKey, s)
	}
	return s
}

// serverTrust asks a Caddy server whether an address is one of its trusted
// proxies.
type serverTrust struct {
	srv *caddyhttp.Server
	ctx context.Context
}

func (st serverTrust) trusted(a netip.Addr) bool {
	probe := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: "/"},
		Header:     http.Header{},
		RemoteAddr: netip.AddrPortFrom(a, 0).String(),
	}
	probe = caddyhttp.PrepareRequest(probe.WithContext(st.ctx), caddy.NewEmptyReplacer(), nil, st.srv)
	v, _ := caddyhttp.GetVar(probe.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return v
}
