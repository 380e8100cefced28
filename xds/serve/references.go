package serve

import (
	"errors"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mccgate/mcc/xds/validate"
)

// refs are the names one resource makes Envoy look up: SDS secrets,
// clusters (routes, gRPC services), RDS route configurations and EDS
// load assignments.
type refs struct {
	secrets, clusters, routes, endpoints []string
}

// resourceRefs walks r (Any contents included) for the names it refers to.
func resourceRefs(r types.Resource) (refs, error) {
	var out refs
	err := validate.Walk(r, func(m proto.Message) {
		switch v := m.(type) {
		case *tlsv3.SdsSecretConfig:
			out.secrets = append(out.secrets, v.GetName())
		case *corev3.GrpcService_EnvoyGrpc:
			out.clusters = append(out.clusters, v.GetClusterName())
		case *routev3.RouteAction:
			if c := v.GetCluster(); c != "" {
				out.clusters = append(out.clusters, c)
			}
			for _, wc := range v.GetWeightedClusters().GetClusters() {
				out.clusters = append(out.clusters, wc.GetName())
			}
		case *hcmv3.Rds:
			out.routes = append(out.routes, v.GetRouteConfigName())
		case *clusterv3.Cluster:
			if v.GetType() == clusterv3.Cluster_EDS {
				name := v.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = v.GetName()
				}
				out.endpoints = append(out.endpoints, name)
			}
		}
	})
	return out, err
}

// checkReferences is Snapshot.Consistent and closes its gaps, from the
// references each resource was found to hold (resourceFacts, computed
// once per resource):
//   - every RDS route configuration and EDS load assignment named is in the
//     snapshot, and the snapshot holds no other (Consistent);
//   - every SDS secret a resource names is in the snapshot, and every secret
//     in the snapshot is named by something (in ADS mode the cache answers
//     a named request only when the node asked for every resource of the
//     type, so an unreferenced secret stalls SDS for the whole group);
//   - every cluster that a route, a gRPC service (ext_authz, access log) or
//     anything else names exists.
func checkReferences(res Resources, facts func(types.Resource) *resourceFacts) error {
	named := map[string]map[string]bool{}
	note := func(typ string, names []string) {
		if named[typ] == nil {
			named[typ] = map[string]bool{}
		}
		for _, n := range names {
			named[typ][n] = true
		}
	}
	var errs []error
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType} {
		for _, r := range res[typ] {
			f := facts(r)
			if f.refsErr != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", typeLabel(typ), cachev3.GetResourceName(r), f.refsErr))
				continue
			}
			note(resourcev3.SecretType, f.refs.secrets)
			note(resourcev3.ClusterType, f.refs.clusters)
			note(resourcev3.RouteType, f.refs.routes)
			note(resourcev3.EndpointType, f.refs.endpoints)
		}
	}
	have := func(typ string) map[string]bool {
		out := map[string]bool{}
		for _, r := range res[typ] {
			out[cachev3.GetResourceName(r)] = true
		}
		return out
	}
	// Problems are collected unordered (no sorting of thousands of names
	// when there are none) and sorted for the message.
	var problems []string
	missing := func(typ string) {
		in := have(typ)
		for name := range named[typ] {
			if !in[name] {
				problems = append(problems, fmt.Sprintf("%s %q is referenced but not in the snapshot", typeLabel(typ), name))
			}
		}
	}
	unreferenced := func(typ, why string) {
		for _, r := range res[typ] {
			if name := cachev3.GetResourceName(r); !named[typ][name] {
				problems = append(problems, fmt.Sprintf("%s %q is in the snapshot but nothing references it%s", typeLabel(typ), name, why))
			}
		}
	}
	missing(resourcev3.RouteType)
	unreferenced(resourcev3.RouteType, "")
	missing(resourcev3.EndpointType)
	unreferenced(resourcev3.EndpointType, "")
	missing(resourcev3.SecretType)
	unreferenced(resourcev3.SecretType, " (in ADS mode it would stall SDS)")
	missing(resourcev3.ClusterType)
	sort.Strings(problems)
	for _, p := range problems {
		errs = append(errs, errors.New(p))
	}
	return errors.Join(errs...)
}
