package envoyext

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/zap"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

// HeaderExternalID carries the block's reference (the event's externalID)
// in a denied response, so a client can quote it to support; the same
// header at both gateways.
const HeaderExternalID = adapter.HeaderExternalID

// DynamicMetadataNamespace is where Envoy files CheckResponse.dynamic_metadata
// (ext_authz's own namespace); access logs can print it with %DYNAMIC_METADATA%.
const DynamicMetadataNamespace = "envoy.filters.http.ext_authz"

// upstreamHeaders are the headers mcc sets towards the upstream. Envoy header
// keys are lower case.
var upstreamHeaders = []string{
	strings.ToLower(fusion.HeaderEvent),
	strings.ToLower(fusion.HeaderReason),
	strings.ToLower(fusion.HeaderFusionSet),
}

// okClean is the answer for an allowed request with nothing to pass on. It
// strips any client-sent copies of mcc's upstream headers: only mcc may
// write them. It is shared and never modified (gRPC only marshals it).
var okClean = &authv3.CheckResponse{
	Status: &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
		HeadersToRemove: upstreamHeaders,
	}},
}

// Check implements envoy.service.auth.v3.Authorization/Check.
func (a authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return a.s.Check(ctx, req), nil
}

// Check evaluates one request. It never fails the RPC: every problem with the
// request is a decision (a deny for a missing or unknown fusion set), because
// an RPC error would hand the choice to Envoy's failure_mode_allow. Only a
// caller that is not Envoy (the peer check in Serve) or a message over the
// size limit gets an RPC error, before Check runs; mcc xds configures
// failure_mode_allow off, so Envoy denies those requests.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) *authv3.CheckResponse {
	start := time.Now()
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	setID := attrs.GetContextExtensions()[ContextKeyFusionSet]

	// Every string copied into the request ends up in events and log
	// lines: each is cut to a documented length (limits.go).
	r := &fusion.Request{
		SNI:       clip(attrs.GetTlsSession().GetSni(), maxStringLen),
		Host:      clip(httpReq.GetHost(), maxStringLen),
		Method:    clip(httpReq.GetMethod(), maxNameLen),
		Path:      clip(requestPath(httpReq.GetPath()), maxPathLen),
		RequestID: clip(headerValue(httpReq, "x-request-id"), maxStringLen),
		Gateway:   threat.GatewayEnvoy,
		Node:      s.node,
	}
	if r.RequestID == "" {
		r.RequestID = clip(httpReq.GetId(), maxStringLen)
	}
	source := socketIP(attrs.GetSource().GetAddress())
	r.ClientIP = clip(s.proxies.clientIP(source, headerValue(httpReq, "x-forwarded-for")), maxStringLen)
	if hs := s.deviceHeaders(setID); len(hs) > 0 {
		r.Header = make(http.Header, len(hs))
		for _, h := range hs {
			if v := headerValue(httpReq, h.lower); v != "" {
				r.Header[h.canonical] = []string{v}
			}
		}
	}
	if pemCert := attrs.GetSource().GetCertificate(); pemCert != "" {
		s.peerChain(r, pemCert, headerValues(httpReq, HeaderXFCC))
	}

	d := s.engine.Evaluate(ctx, setID, r)
	resp := s.respond(&d, headerValue(httpReq, "accept"))

	set := setID
	if _, known := s.engine.Set(setID); !known {
		set = labelUnknownSet
	}
	s.metrics.decision(set, d.Action, d.Reason)
	s.metrics.checkDuration.Observe(time.Since(start).Seconds())
	if d.Reason != threat.ReasonNone {
		s.logDecision(setID, &d, r)
	}
	return resp
}

// peerChain fills r.PeerCertificates from the leaf Envoy reported and, when
// Envoy forwarded it, the XFCC chain; or sets r.Reason when they are refused.
// Sizes are checked before anything is decoded, hashed or cached.
func (s *Service) peerChain(r *fusion.Request, pemCert string, xfcc []string) {
	if len(pemCert) > s.limits.maxCertificateBytes {
		r.Reason = threat.ReasonCertMalformed
		r.ReasonData = map[string]any{"error": fmt.Sprintf("peer certificate is %d bytes, more than the %d allowed", len(pemCert), s.limits.maxCertificateBytes),
			"field": "attributes.source.certificate"}
		return
	}
	xfccBytes := 0
	for _, v := range xfcc {
		xfccBytes += len(v)
	}
	if xfccBytes > s.limits.maxXFCCBytes {
		r.Reason = threat.ReasonCertMalformed
		r.ReasonData = map[string]any{"error": fmt.Sprintf("x-forwarded-client-cert is %d bytes, more than the %d allowed", xfccBytes, s.limits.maxXFCCBytes),
			"field": HeaderXFCC}
		return
	}
	key := certCacheKey(pemCert, xfcc)
	if chain, ok := s.certs.get(key); ok {
		r.PeerCertificates = chain
		return
	}
	der, err := decodePeerCertificate(pemCert)
	if err != nil {
		// Not what Envoy's encoder writes: report it as a malformed
		// certificate (scored, and blocked or reported per the set's
		// mode) rather than guessing what was meant.
		r.Reason = threat.ReasonCertMalformed
		r.ReasonData = map[string]any{"error": err.Error(), "field": "attributes.source.certificate"}
		return
	}
	chain := [][]byte{der}
	if len(xfcc) > 0 {
		c, err := s.xfccChain(xfcc, der)
		var refused *adapter.CertHeaderError
		switch {
		case err == nil:
			chain = c
		case errors.As(err, &refused):
			// A header Envoy (SANITIZE_SET) could not have written: refuse
			// it with the shared rule's reason, and do not cache it.
			r.Reason = refused.Reason
			r.ReasonData = map[string]any{"error": clip(refused.Error(), maxFailureLen), "field": HeaderXFCC}
			return
		}
	}
	s.certs.put(key, chain)
	r.PeerCertificates = chain
}

// respond turns a decision into Envoy's answer.
func (s *Service) respond(d *fusion.Decision, accept string) *authv3.CheckResponse {
	if d.Action == fusion.Allow {
		up := d.UpstreamHeaders()
		if len(up) == 0 {
			return okClean
		}
		ok := &authv3.OkHttpResponse{Headers: make([]*corev3.HeaderValueOption, 0, len(up))}
		set := make(map[string]bool, len(up))
		for k, v := range up {
			k = strings.ToLower(k)
			set[k] = true
			ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: k, Value: v},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
		// Remove client-sent copies of the mcc headers this answer does not
		// overwrite (removing one we set would undo it).
		for _, h := range upstreamHeaders {
			if !set[h] {
				ok.HeadersToRemove = append(ok.HeadersToRemove, h)
			}
		}
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: decisionMetadata(d),
		}
	}

	// The block response both gateways send (adapter.Block), header for
	// header and byte for byte.
	block := adapter.Block(d, accept)
	headers := make([]*corev3.HeaderValueOption, 0, len(block.Header))
	for _, kv := range block.Header {
		headers = append(headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: kv[0], Value: kv[1]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(block.Status)},
			Headers: headers,
			Body:    string(block.Body),
		}},
		DynamicMetadata: decisionMetadata(d),
	}
}

// decisionMetadata is what Envoy's access log may print about a decision
// that found something: the reason, the fusion set and the event id.
func decisionMetadata(d *fusion.Decision) *structpb.Struct {
	if d.Reason == threat.ReasonNone {
		return nil
	}
	f := map[string]*structpb.Value{
		"mcc_reason_code": structpb.NewStringValue(string(d.Reason)),
		"mcc_fusion_set":  structpb.NewStringValue(d.FusionSet),
		"mcc_action":      structpb.NewStringValue(d.Action.String()),
	}
	if d.Event != nil {
		f["mcc_event_id"] = structpb.NewStringValue(d.Event.ID)
	}
	return &structpb.Struct{Fields: f}
}

func (s *Service) logDecision(setID string, d *fusion.Decision, r *fusion.Request) {
	fields := []zap.Field{
		zap.String("fusion_set", clip(setID, maxNameLen)),
		zap.String("reason", string(d.Reason)),
		zap.String("action", d.Action.String()),
		zap.String("client_ip", r.ClientIP),
		zap.String("request_id", r.RequestID),
	}
	if d.Event != nil {
		fields = append(fields, zap.String("event_id", d.Event.ID), zap.Bool("emitted", d.Emitted))
	}
	switch {
	case d.Reason == threat.ReasonConfigError:
		s.decisionLog.Error("request for a missing or unknown fusion set denied", fields...)
	case d.Action == fusion.Block:
		s.decisionLog.Info("request blocked", append(fields, zap.Int("status", d.Status))...)
	default:
		s.decisionLog.Info("request reported", fields...)
	}
}

// headerValue reads a request header by lower-case name, from the headers
// map or, when Envoy was told to encode_raw_headers, from header_map.
func headerValue(h *authv3.AttributeContext_HttpRequest, lower string) string {
	if h == nil {
		return ""
	}
	if v, ok := h.Headers[lower]; ok {
		return v
	}
	if len(h.Headers) == 0 && h.HeaderMap != nil {
		for _, hv := range h.HeaderMap.Headers {
			if hv.Key == lower {
				if hv.Value != "" {
					return hv.Value
				}
				return string(hv.RawValue)
			}
		}
	}
	return ""
}

// headerValues returns every value of a request header: the one
// comma-joined value of the headers map, or each line of header_map.
func headerValues(h *authv3.AttributeContext_HttpRequest, lower string) []string {
	if h == nil {
		return nil
	}
	if v, ok := h.Headers[lower]; ok {
		return []string{v}
	}
	var out []string
	if len(h.Headers) == 0 && h.HeaderMap != nil {
		for _, hv := range h.HeaderMap.Headers {
			if hv.Key == lower {
				if hv.Value != "" {
					out = append(out, hv.Value)
				} else {
					out = append(out, string(hv.RawValue))
				}
			}
		}
	}
	return out
}

// socketIP returns the IP of an Envoy socket address ("" for pipes and
// missing addresses).
func socketIP(a *corev3.Address) string {
	return a.GetSocketAddress().GetAddress()
}

// socketAddr formats an Envoy socket address as host:port for events.
func socketAddr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		if p := a.GetPipe(); p != nil {
			return "unix:" + p.GetPath()
		}
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

// requestPath turns Envoy's request target into the path Caddy reports
// (r.URL.Path): without the query, which can carry tokens that have no place
// in threat events, and percent-decoded.
func requestPath(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if strings.IndexByte(target, '%') < 0 {
		return target
	}
	if p, err := url.PathUnescape(target); err == nil {
		return p
	}
	return target
}
