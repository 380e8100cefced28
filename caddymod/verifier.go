package caddymod

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

func init() {
	caddy.RegisterModule(new(Verifier))
}

// Verifier enforces a fusion set during the TLS handshake, for hard rejects
// before any HTTP request exists:
//
//	client_auth {
//		mode require_and_verify
//		trust_pool file ca.pem
//		verifier fusion_set <id>
//	}
//
// Caddy calls it only when the client presented a certificate, and gives it
// nothing but the certificates: no client IP, SNI or headers. Its events so
// carry no clientIP, and fail-safe scores from handshakes are keyed by the
// certificate alone. A missing certificate, and everything that needs the
// request, is the fusion_set handler's job.
type Verifier struct {
	// FusionSet is the id of the fusion set to enforce.
	FusionSet string `json:"fusion_set"`

	state    *sharedState
	counters *setCounters
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Verifier) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.client_auth.verifier.fusion_set",
		New: func() caddy.Module { return new(Verifier) },
	}
}

// Provision finds the mcc app and the fusion set.
func (v *Verifier) Provision(ctx caddy.Context) error {
	v.logger = ctx.Logger()
	if v.FusionSet == "" {
		return errors.New("verifier fusion_set: missing fusion set id")
	}
	app, err := appFrom(ctx, v.FusionSet)
	if err != nil {
		return err
	}
	v.state = app.state
	v.counters = app.state.metrics.forSet(v.FusionSet)
	return nil
}

// VerifyClientCertificate evaluates the presented chain; a Block decision
// fails the handshake. The engine reports the failure as HANDSHAKE_FAILED
// with the specific reason in reasonData.cause.
func (v *Verifier) VerifyClientCertificate(rawCerts [][]byte, verifiedChains [][]*x509.Certificate) error {
	d := v.state.engine.Evaluate(context.Background(), v.FusionSet, &fusion.Request{
		PeerCertificates: rawCerts,
		VerifiedChains:   verifiedChains,
		Handshake:        true,
		Gateway:          threat.GatewayCaddy,
		Node:             v.state.node,
	})
	v.counters.inc(&d)
	if ce := v.logger.Check(zapcore.DebugLevel, "fusion set handshake decision"); ce != nil {
		ce.Write(evaluationOf(&d, v.FusionSet).debugFields(&d)...)
	}
	if d.Action == fusion.Block {
		return fmt.Errorf("fusion set %s: client certificate rejected: %s", v.FusionSet, d.Reason)
	}
	return nil
}

// UnmarshalCaddyfile parses `verifier fusion_set <id>`.
func (v *Verifier) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if !d.NextArg() {
		return d.Err("verifier fusion_set: missing fusion set id")
	}
	v.FusionSet = d.Val()
	if d.NextArg() {
		return d.Errf("verifier fusion_set %s: unexpected argument %q", v.FusionSet, d.Val())
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("verifier fusion_set %s: takes no block", v.FusionSet)
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner                  = (*Verifier)(nil)
	_ caddytls.ClientCertificateVerifier = (*Verifier)(nil)
	_ caddyfile.Unmarshaler              = (*Verifier)(nil)
)
