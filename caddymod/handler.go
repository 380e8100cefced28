package caddymod

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// requestUUIDVar is the var in which caddyhttp caches a request's
// {http.request.uuid} once something asked for it.
const requestUUIDVar = "uuid"

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
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The upstream must be able to trust these: whatever the client sent
	// under these names goes before anything reads the request.
	r.Header.Del(fusion.HeaderEvent)
	r.Header.Del(fusion.HeaderReason)
	r.Header.Del(fusion.HeaderFusionSet)

	ctx := r.Context()
	// One allocation holds everything this request needs from us.
	ev := &evaluation{set: h.FusionSet}
	// The engine keeps nothing of the request itself, only of its contents,
	// so it can live on the stack; the chain's backing array is ev's.
	req := &fusion.Request{
		Host:    r.Host,
		Method:  r.Method,
		Path:    r.URL.Path,
		Header:  r.Header,
		Gateway: threat.GatewayCaddy,
		Node:    h.state.node,
	}
	req.ClientIP, _ = caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string)
	if r.TLS != nil {
		req.SNI = r.TLS.ServerName
		req.PeerCertificates = ev.rawChain(r.TLS.PeerCertificates)
		req.VerifiedChains = r.TLS.VerifiedChains
	}
	if h.CertHeader != "" {
		h.applyCertHeader(r, req)
	}
	// The event's externalID (also the block page's reference) is Caddy's
	// request UUID when the request already has one, so that it matches
	// the access log's uuid; otherwise the engine makes one up for a
	// failure. Asking for the UUID here would generate one for every
	// request, a cost the good path should not pay.
	if id, ok := caddyhttp.GetVar(ctx, requestUUIDVar).(fmt.Stringer); ok {
		req.RequestID = id.String()
	}

	ev.d = h.state.engine.Evaluate(ctx, h.FusionSet, req)
	d := &ev.d
	h.counters.inc(d)
	if repl, ok := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(ev.placeholder)
	}
	if extra, ok := ctx.Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.Inline(ev))
	}
	if ce := h.logger.Check(zapcore.DebugLevel, "fusion set decision"); ce != nil {
		ce.Write(
			zap.String("fusion_set", h.FusionSet),
			zap.String("decision", d.Action.String()),
			zap.String("reason", string(d.Reason)),
			zap.String("client_ip", req.ClientIP),
			zap.String("app_id", ev.appID()),
			zap.String("build_id", ev.buildID()),
			zap.String("event_id", ev.eventID()),
			zap.Bool("event_emitted", d.Emitted),
			zap.Bool("cache_hit", d.CacheHit),
		)
	}

	if d.Action == fusion.Block {
		writeBlock(w, r, d)
		return nil
	}
	for k, v := range d.UpstreamHeaders() {
		r.Header.Set(k, v)
	}
	return next.ServeHTTP(w, r)
}

// applyCertHeader takes the client certificate from the configured header
// when a trusted proxy sent it, and otherwise removes the header and marks
// the request as spoofing it.
func (h *Handler) applyCertHeader(r *http.Request, req *fusion.Request) {
	vals := r.Header.Values(h.CertHeader)
	if len(vals) == 0 {
		return
	}
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	if !trusted {
		r.Header.Del(h.CertHeader)
		req.Reason = threat.ReasonSpoofedCertHeader
		req.ReasonData = map[string]any{"header": h.CertHeader}
		return
	}
	var (
		chain [][]byte
		err   error
	)
	if h.CertHeaderFormat == CertHeaderPEM {
		chain, err = parsePEMHeader(vals)
	} else {
		chain, err = parseXFCC(vals)
	}
	if err != nil {
		req.Reason = threat.ReasonCertMalformed
		req.ReasonData = map[string]any{"header": h.CertHeader, "error": err.Error()}
		return
	}
	// The proxy's own connection (and any chain Go verified for it) says
	// nothing about the client the header describes.
	req.PeerCertificates = chain
	req.VerifiedChains = nil
}

// writeBlock writes the fusion set's block response. It writes the body
// itself rather than returning a caddyhttp.Error, whose response would be
// empty without a handle_errors route.
func writeBlock(w http.ResponseWriter, r *http.Request, d *fusion.Decision) {
	ct, body := fusion.RenderBlock(d, r.Header.Get("Accept"))
	status := d.Status
	if status == 0 {
		status = http.StatusForbidden
	}
	hdr := w.Header()
	hdr.Set("Content-Type", ct)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// evaluation is one request's evaluation: the engine's answer, and what
// placeholders and the access log show of it. It is allocated once per
// request and outlives the handler (the replacer and the access log read it
// later).
type evaluation struct {
	d   fusion.Decision
	set string
	// raw backs req.PeerCertificates for the usual short chains.
	raw [4][]byte
}

// rawChain returns the DER of each presented certificate, leaf first.
func (ev *evaluation) rawChain(certs []*x509.Certificate) [][]byte {
	if len(certs) == 0 {
		return nil
	}
	raw := ev.raw[:0]
	for _, c := range certs {
		raw = append(raw, c.Raw)
	}
	return raw
}

func (ev *evaluation) appID() string {
	if ev.d.Cert != nil {
		return ev.d.Cert.AppID
	}
	return ""
}

func (ev *evaluation) buildID() string {
	if ev.d.Cert != nil {
		return ev.d.Cert.BuildID
	}
	return ""
}

func (ev *evaluation) eventID() string {
	if ev.d.Event != nil {
		return ev.d.Event.ID
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
func (ev *evaluation) placeholder(key string) (any, bool) {
	if !strings.HasPrefix(key, phPrefix) {
		return nil, false
	}
	switch key {
	case phDecision:
		return ev.d.Action.String(), true
	case phReason:
		return string(ev.d.Reason), true
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
func (ev *evaluation) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("mcc_decision", ev.d.Action.String())
	enc.AddString("mcc_reason", string(ev.d.Reason))
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
	_ zapcore.ObjectMarshaler     = (*evaluation)(nil)
)
