package xds_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/xdstest"
)

// BenchmarkReload1000FusionSets is one reload of mcc xds after a one-route
// change of a fusion set file with 1,000 fusion sets (all trusting one CA
// with one CRL, as sets of one organisation do) and 1,000 routes: read and
// check the file and what it references, decode the gateway section,
// translate what changed, check and publish. bench/xds measures the same
// from outside, with clients.
func BenchmarkReload1000FusionSets(b *testing.B) {
	const n = 1000
	dir := b.TempDir()
	ca := xdstest.NewCA(b, "apps CA")
	server := xdstest.NewCA(b, "server CA").IssueServer(b, "*.example.com")
	xdstest.WriteFile(b, dir, "server.pem", server.CertPEM)
	xdstest.WriteFile(b, dir, "server-key.pem", server.KeyPEM)
	xdstest.WriteFile(b, dir, "ca.pem", ca.CertPEM)
	xdstest.WriteFile(b, dir, "crl.pem", ca.CRL(b))
	file := func(prefix string) []byte {
		var sets, routes, upstreams strings.Builder
		for i := range n {
			id := fmt.Sprintf("app-%d", i)
			mode := "defense"
			if i%2 == 1 {
				mode = "detection"
			}
			fmt.Fprintf(&sets, "  - id: %s\n    trusted_ca:\n      file: ca.pem\n    app_id: com.example.app%d\n    mode: %s\n    threat_events: true\n    revocation:\n      crls: [crl.pem]\n", id, i, mode)
			pp := "/"
			if i == n/2 {
				pp = prefix
			}
			fmt.Fprintf(&routes, "        - host: %s.example.com\n          path_prefix: %s\n          fusion_set: %s\n          upstream: api-%d\n", id, pp, id, i)
			fmt.Fprintf(&upstreams, "    - name: api-%d\n      endpoints: [127.0.0.1:%d]\n", i, 20000+i)
		}
		return []byte("fusion_sets:\n" + sets.String() + `gateway:
  authz:
    address: 127.0.0.1:18081
  listeners:
    - name: edge
      port: 8443
      certificate:
        cert_file: server.pem
        key_file: server-key.pem
      routes:
` + routes.String() + "  upstreams:\n" + upstreams.String() + `  node_groups:
    - cluster: edge
      listeners: [edge]
`)
	}
	path := xdstest.WriteFile(b, dir, "fusion-sets.yaml", file("/"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := xds.NewServer(ctx, xds.Options{ConfigPath: path})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		xdstest.WriteFile(b, dir, "fusion-sets.yaml", file(fmt.Sprintf("/v%d", i)))
		b.StartTimer()
		if err := srv.Reload(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
