package serve

import (
	"errors"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/xds/validate"
)

// checkReferences closes the gaps of Snapshot.Consistent, which checks only
// RDS and EDS names: every SDS secret a resource names must be in the
// snapshot, and every secret in the snapshot must be named by something
// (in ADS mode the cache answers a named request only when the node asked
// for every resource of the type, so an unreferenced secret stalls SDS for
// the whole group); and every cluster that a route, a gRPC service
// (ext_authz, access log) or anything else names must exist.
func checkReferences(res Resources) error {
	secrets := map[string]bool{}
	clusters := map[string]bool{}
	var errs []error
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
		for _, r := range res[typ] {
			err := validate.Walk(r, func(m proto.Message) {
				switch v := m.(type) {
				case *tlsv3.SdsSecretConfig:
					secrets[v.GetName()] = true
				case *corev3.GrpcService_EnvoyGrpc:
					clusters[v.GetClusterName()] = true
				case *routev3.RouteAction:
					if c := v.GetCluster(); c != "" {
						clusters[c] = true
					}
					for _, wc := range v.GetWeightedClusters().GetClusters() {
						clusters[wc.GetName()] = true
					}
				}
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", typeLabel(typ), cachev3.GetResourceName(r), err))
			}
		}
	}
	have := func(typ string) map[string]bool {
		out := map[string]bool{}
		for _, r := range res[typ] {
			out[cachev3.GetResourceName(r)] = true
		}
		return out
	}
	haveSecrets, haveClusters := have(resourcev3.SecretType), have(resourcev3.ClusterType)
	for _, name := range sortedKeys(secrets) {
		if !haveSecrets[name] {
			errs = append(errs, fmt.Errorf("secret %q is referenced but not in the snapshot", name))
		}
	}
	for _, name := range sortedKeys(haveSecrets) {
		if !secrets[name] {
			errs = append(errs, fmt.Errorf("secret %q is in the snapshot but nothing references it (in ADS mode it would stall SDS)", name))
		}
	}
	for _, name := range sortedKeys(clusters) {
		if !haveClusters[name] {
			errs = append(errs, fmt.Errorf("cluster %q is referenced but not in the snapshot", name))
		}
	}
	return errors.Join(errs...)
}
