package caddymod

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// requestUUIDVar is the var in which caddyhttp caches a request's
// {http.request.uuid} once something asked for it.
const requestUUIDVar = "uuid"

// upstreamHeaders are the headers this handler sets for the upstream, in
// canonical form.
var upstreamHeaders = [...]string{fusion.HeaderEvent, fusion.HeaderReason, fusion.HeaderFusionSet}

// Cert header formats.
const (
	CertHeaderXFCC = "xfcc"
	CertHeaderPEM  = "pem"
)

// Handler enforces a fusion set on HTTP requests: it evaluates the client
// certificate (from the TLS connection, or from a header set by a trusted
// proxy) and blocks, or passes the threat event to the upstream, as the
// set's mode says.
type Handler struct {
	// FusionSet is the id of the fusion set to enforce.
	FusionSet string `json:"fusion_set"`
	// CertHeader, when set, names a request header that carries the client
	// certificate from a TLS-terminating proxy. It is believed only from a
	// trusted proxy (the server's trusted_proxies); from anyone else it is
	// removed and reported as SPOOFED_CERT_HEADER.
	CertHeader string `json:"cert_header,omitempty"`
	// CertHeaderFormat is "xfcc" (Envoy's x-forwarded-client-cert, default)
	// or "pem" (URL-encoded or plain PEM).
	CertHeaderFormat string `json:"cert_header_format,omitempty"`
	// CertHeaderMaxSize caps the certificate header before it is parsed;
	// a longer one is CERT_MALFORMED. Default 64 KiB
	// (adapter.DefaultMaxCertHeaderBytes), at most 1 MiB.
	CertHeaderMaxSize int `json:"cert_header_max_size,omitempty"`
	// CertHeaderAllowMultipleElements accepts an XFCC value with several
	// elements (a chain of proxies in APPEND_FORWARD mode) and reads the
	// right-most one, the element the nearest (trusted) proxy added.
	// Without it, more than one element is SPOOFED_CERT_HEADER, and so is,
	// always, more than one line of the header.
	CertHeaderAllowMultipleElements bool `json:"cert_header_allow_multiple_elements,omitempty"`

	state    *sharedState
	counters *setCounters
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.fusion_set",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the mcc app and the fusion set.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.FusionSet == "" {
		return fmt.Errorf("fusion_set: missing fusion set id")
	}
	switch h.CertHeaderFormat {
	case "":
		if h.CertHeader != "" {
			h.CertHeaderFormat = CertHeaderXFCC
		}
	case CertHeaderXFCC, CertHeaderPEM:
		if h.CertHeader == "" {
			return fmt.Errorf("fusion_set %s: cert_header_format without cert_header", h.FusionSet)
		}
	default:
		return fmt.Errorf("fusion_set %s: unknown cert header format %q (want xfcc or pem)", h.FusionSet, h.CertHeaderFormat)
	}
	if h.CertHeaderMaxSize < 0 || h.CertHeaderMaxSize > maxCertHeaderLimit {
		return fmt.Errorf("fusion_set %s: cert_header max_size must be between 1 and %d bytes, got %d", h.FusionSet, maxCertHeaderLimit, h.CertHeaderMaxSize)
	}
	if h.CertHeader == "" && (h.CertHeaderMaxSize != 0 || h.CertHeaderAllowMultipleElements) {
		return fmt.Errorf("fusion_set %s: cert header options without cert_header", h.FusionSet)
	}
	if h.CertHeaderAllowMultipleElements && h.CertHeaderFormat != CertHeaderXFCC {
		return fmt.Errorf("fusion_set %s: allow_multiple_elements is for the xfcc format only", h.FusionSet)
	}
	if h.CertHeader != "" {
		h.CertHeader = http.CanonicalHeaderKey(h.CertHeader)
	}
	app, err := appFrom(ctx, h.FusionSet)
	if err != nil {
		return err
	}
	h.state = app.state
	h.counters = app.state.metrics.forSet(h.FusionSet)
	return nil
}

// appFrom returns the provisioned mcc app and checks that it has setID.
func appFrom(ctx caddy.Context, setID string) (*App, error) {
	v, err := ctx.App("mcc")
	if err != nil {
		return nil, fmt.Errorf("fusion_set %s: loading the mcc app: %w", setID, err)
	}
	app, ok := v.(*App)
	if !ok || app.state == nil || app.cfg == nil {
		return nil, fmt.Errorf("fusion_set %s: the mcc app is not provisioned", setID)
	}
	if _, ok := app.cfg.Sets[setID]; !ok {
		return nil, fmt.Errorf("fusion_set %s: no such fusion set in the mcc app (known: %s)", setID, strings.Join(app.cfg.IDs, ", "))
	}
	return app, nil
}

// ServeHTTP evaluates the request and blocks it or passes it on.
//
// The cached good path is the hot one: it allocates once (the placeholder
// provider) and looks up two values in the request's context (three for a
// decision with a finding).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The upstream must be able to trust these: whatever the client sent
	// under these names goes before anything reads the request. The names
	// are canonical and so are the keys of a parsed request's header, which
	// spares Header.Del's canonicalization, the dearest step of this path.
	for _, name := range upstreamHeaders {
		delete(r.Header, name)
	}

	ctx := r.Context()
	vars, _ := ctx.Value(caddyhttp.VarsCtxKey).(map[string]any)
	// The engine keeps nothing of the request itself, only of its contents,
	// so it lives on the stack and the chain's backing array goes back to
	// the pool once the engine is done.
	req := fusion.Request{
		Host:    r.Host,
		Method:  r.Method,
		Path:    r.URL.Path,
		Header:  r.Header,
		Gateway: threat.GatewayCaddy,
		Node:    h.state.node,
	}
	req.ClientIP = clientIP(r, vars)
	var chain *rawChain
	if r.TLS != nil {
		req.SNI = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			chain = getRawChain(r.TLS.PeerCertificates)
			req.PeerCertificates = chain.der
		}
		req.VerifiedChains = r.TLS.VerifiedChains
	}
	if h.CertHeader != "" {
		h.applyCertHeader(r, vars, &req)
	}
	// The event's externalID (also the block page's reference) is Caddy's
	// request UUID when the request already has one, so that it matches
	// the access log's uuid; otherwise the engine makes one up for a
	// failure. Asking for the UUID here would generate one for every
	// request, a cost the good path should not pay.
	if id, ok := vars[requestUUIDVar].(fmt.Stringer); ok {
		req.RequestID = id.String()
	}

	d := h.state.engine.Evaluate(ctx, h.FusionSet, &req)
	chain.release()
	h.counters.inc(&d)
	ev := evaluationOf(&d, h.FusionSet)
	if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// The method value holds its own copy of ev: the request's one
		// allocation on the good path.
		repl.Map(ev.placeholder)
	}
	// Allowed requests without a finding do not pay for the access log
	// fields (Caddy's ExtraLogFields.Add allocates three times); a config
	// that wants them on every request uses log_append with the
	// placeholders.
	if d.Reason != threat.ReasonNone {
		if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
			extra.Add(zap.Inline(ev))
		}
	}
	if ce := h.logger.Check(zapcore.DebugLevel, "fusion set decision"); ce != nil {
		ce.Write(ev.debugFields(&d, zap.String("client_ip", req.ClientIP))...)
	}

	if d.Action == fusion.Block {
		writeBlock(w, r, &d)
		return nil
	}
	if d.Reason != threat.ReasonNone {
		for k, v := range d.UpstreamHeaders() {
			r.Header.Set(k, v)
		}
	}
	return next.ServeHTTP(w, r)
}

// applyCertHeader takes the client certificate from the configured header
// when a trusted proxy sent it, and otherwise removes the header and marks
// the request as spoofing it. A header the rules refuse (more than one line,
// more than one XFCC element unless allowed, too long, unreadable) is
// removed too, so that the upstream never acts on it, and the request is
// judged on the refusal's reason with no certificate.
func (h *Handler) applyCertHeader(r *http.Request, vars map[string]any, req *fusion.Request) {
	vals := r.Header.Values(h.CertHeader)
	if len(vals) == 0 {
		return
	}
	trusted, _ := vars[caddyhttp.TrustedProxyVarKey].(bool)
	if !trusted {
		r.Header.Del(h.CertHeader)
		req.Reason = threat.ReasonSpoofedCertHeader
		req.ReasonData = map[string]any{"header": h.CertHeader}
		return
	}
	chain, err := CertsFromHeader(h.CertHeaderFormat, vals,
		adapter.CertHeaderOptions{MaxBytes: h.CertHeaderMaxSize, AllowMultipleElements: h.CertHeaderAllowMultipleElements})
	if err != nil {
		r.Header.Del(h.CertHeader)
		req.Reason = threat.ReasonCertMalformed
		var ce *adapter.CertHeaderError
		if errors.As(err, &ce) {
			req.Reason = ce.Reason
		}
		req.ReasonData = map[string]any{"header": h.CertHeader, "error": err.Error()}
		// Whatever the connection itself carried belongs to the proxy.
		req.PeerCertificates = nil
		req.VerifiedChains = nil
		return
	}
	// The proxy's own connection (and any chain Go verified for it) says
	// nothing about the client the header describes.
	req.PeerCertificates = chain
	req.VerifiedChains = nil
}

// CertsFromHeader is how the fusion_set handler reads a forwarded-certificate
// header that a trusted proxy sent: format is CertHeaderXFCC or
// CertHeaderPEM, values are the header's lines. It returns the chain (DER,
// leaf first) or an *adapter.CertHeaderError. It is the kit's rule and
// nothing more; it is exported so that the differential fuzz test in
// parity can hold it against what `mcc authz` reads from the same header.
func CertsFromHeader(format string, values []string, opts adapter.CertHeaderOptions) ([][]byte, error) {
	if format == CertHeaderPEM {
		return adapter.ParsePEMHeader(values, opts)
	}
	return adapter.ParseXFCC(values, opts)
}

// writeBlock writes the block response both gateways send (adapter.Block).
// It writes the body itself rather than returning a caddyhttp.Error, whose
// response would be empty without a handle_errors route.
func writeBlock(w http.ResponseWriter, r *http.Request, d *fusion.Decision) {
	// Every Accept line, joined as Envoy joins repeated headers for ext_authz:
	// the same request gets the same body at both gateways.
	b := adapter.Block(d, strings.Join(r.Header.Values("Accept"), ","))
	hdr := w.Header()
	for _, kv := range b.Header {
		hdr.Set(kv[0], kv[1])
	}
	hdr.Set("Content-Length", strconv.Itoa(len(b.Body)))
	w.WriteHeader(b.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Body)
	}
}

// evaluation is what placeholders and the access log show of one request's
// decision. It is a small value: the placeholder provider's method value
// carries a copy of it, so the request allocates nothing else for them.
type evaluation struct {
	action fusion.Action
	reason threat.Reason
	set    string
	cert   *threat.CertInfo
	event  *threat.Event
}

func evaluationOf(d *fusion.Decision, set string) evaluation {
	return evaluation{action: d.Action, reason: d.Reason, set: set, cert: d.Cert, event: d.Event}
}

// debugFields are the fields of a decision's debug log line.
func (ev evaluation) debugFields(d *fusion.Decision, extra ...zap.Field) []zap.Field {
	return append([]zap.Field{
		zap.String("fusion_set", ev.set),
		zap.String("decision", d.Action.String()),
		zap.String("reason", string(d.Reason)),
		zap.String("app_id", ev.appID()),
		zap.String("build_id", ev.buildID()),
		zap.String("event_id", ev.eventID()),
		zap.Bool("event_emitted", d.Emitted),
		zap.Bool("cache_hit", d.CacheHit),
	}, extra...)
}

func (ev evaluation) appID() string {
	if ev.cert != nil {
		return ev.cert.AppID
	}
	return ""
}

func (ev evaluation) buildID() string {
	if ev.cert != nil {
		return ev.cert.BuildID
	}
	return ""
}

func (ev evaluation) eventID() string {
	if ev.event != nil {
		return ev.event.ID
	}
	return ""
}

// Placeholders, without braces.
const (
	phPrefix    = "http.mcc."
	phDecision  = phPrefix + "decision"
	phReason    = phPrefix + "reason"
	phFusionSet = phPrefix + "fusion_set"
	phAppID     = phPrefix + "app_id"
	phBuildID   = phPrefix + "build_id"
	phEventID   = phPrefix + "event_id"
)

// placeholder provides {http.mcc.*}. Values are computed when a placeholder
// is used, so a request whose config uses none pays nothing for them.
func (ev evaluation) placeholder(key string) (any, bool) {
	if !strings.HasPrefix(key, phPrefix) {
		return nil, false
	}
	switch key {
	case phDecision:
		return ev.action.String(), true
	case phReason:
		return string(ev.reason), true
	case phFusionSet:
		return ev.set, true
	case phAppID:
		return ev.appID(), true
	case phBuildID:
		return ev.buildID(), true
	case phEventID:
		return ev.eventID(), true
	}
	return nil, false
}

// MarshalLogObject adds the access log fields (inline, top level).
func (ev evaluation) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("mcc_decision", ev.action.String())
	enc.AddString("mcc_reason", string(ev.reason))
	enc.AddString("mcc_fusion_set", ev.set)
	enc.AddString("mcc_app_id", ev.appID())
	enc.AddString("mcc_build_id", ev.buildID())
	enc.AddString("mcc_event_id", ev.eventID())
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ zapcore.ObjectMarshaler     = evaluation{}
)
