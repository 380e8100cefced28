package envoyext

import (
	"path/filepath"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/xds/gateway"
)

// gatewayRoutes is the gateway section of one config, decoded for routing
// handshake failures the way the control plane built Envoy's filter chains.
type gatewayRoutes struct {
	cfg *fusion.Config
	gw  *gateway.Gateway // nil: no usable gateway section
}

// gatewayFor returns the decoded gateway section of the engine's current
// config, decoding it once per config. A section that does not decode here
// (mcc xds refuses it too) is logged once and routing falls back to the
// other rules.
func (s *Service) gatewayFor(cfg *fusion.Config) *gateway.Gateway {
	if g := s.gateway.Load(); g != nil && g.cfg == cfg {
		return g.gw
	}
	g := &gatewayRoutes{cfg: cfg}
	if cfg.File.Gateway != nil {
		gw, err := gateway.Decode(cfg.File.Gateway, gateway.Options{
			File:    cfg.Path,
			BaseDir: filepath.Dir(cfg.Path),
			FusionSet: func(id string) bool {
				_, ok := cfg.Sets[id]
				return ok
			},
		})
		if err != nil {
			s.log.Warn("gateway section not usable for routing handshake failures; using SNI routes and the default set",
				zap.String("path", cfg.Path), zap.Error(err))
		} else {
			g.gw = gw
		}
	}
	s.gateway.Store(g)
	return g.gw
}

// routeHandshake picks the fusion set of a failed handshake: see the package
// documentation for the order.
func (s *Service) routeHandshake(common *accesslogdatav3.AccessLogCommon) (set, how string) {
	if set := common.GetCustomTags()[ContextKeyFusionSet]; set != "" {
		return set, "custom_tag"
	}
	cfg := s.engine.Config()
	if gw := s.gatewayFor(cfg); gw != nil {
		port := common.GetDownstreamLocalAddress().GetSocketAddress().GetPortValue()
		if set, ok := gw.FusionSetForConnection(port, common.GetTlsProperties().GetTlsSniHostname()); ok {
			return set, "gateway"
		}
	}
	onlySet := ""
	if len(cfg.IDs) == 1 {
		onlySet = cfg.IDs[0]
	}
	return s.handshake.route(common, onlySet)
}
