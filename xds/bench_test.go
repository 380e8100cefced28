package xds_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/translate"
	"github.com/mccgate/mcc/xds/xdstest"
)

// BenchmarkReload1000FusionSets is a whole reload of a fusion set file
// with 1,000 fusion sets (each with its own CA file) and 1,000 routes: read
// and check the file and every CA, decode the gateway section, translate,
// check (Consistent, deep validation) and publish. Budget for the snapshot
// build: under 0.5 s.
func BenchmarkReload1000FusionSets(b *testing.B) {
	const n = 1000
	dir := b.TempDir()
	ca := xdstest.NewCA(b, "apps CA")
	server := xdstest.NewCA(b, "server CA").IssueServer(b, "*.example.com")
	xdstest.WriteFile(b, dir, "server.pem", server.CertPEM)
	xdstest.WriteFile(b, dir, "server-key.pem", server.KeyPEM)
	var sets, routes, upstreams strings.Builder
	for i := range n {
		id := fmt.Sprintf("app-%d", i)
		xdstest.WriteFile(b, dir, "ca/"+id+".pem", ca.CertPEM)
		mode := "defense"
		if i%2 == 1 {
			mode = "detection"
		}
		fmt.Fprintf(&sets, "  - id: %s\n    trusted_ca:\n      file: ca/%s.pem\n    app_id: com.example.app%d\n    mode: %s\n    threat_events: true\n", id, id, i, mode)
		fmt.Fprintf(&routes, "        - host: %s.example.com\n          fusion_set: %s\n          upstream: api-%d\n", id, id, i)
		fmt.Fprintf(&upstreams, "    - name: api-%d\n      endpoints: [127.0.0.1:%d]\n", i, 20000+i)
	}
	file := "fusion_sets:\n" + sets.String() + `gateway:
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
`
	path := xdstest.WriteFile(b, dir, "fusion-sets.yaml", []byte(file))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cp := serve.New(ctx, serve.Options{})
		b.StartTimer()
		cfg, err := xds.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		groups, err := translate.Build(cfg.Input)
		if err != nil {
			b.Fatal(err)
		}
		if err := cp.Publish(ctx, serve.Update{ConfigVersion: cfg.Version, Groups: groups}); err != nil {
			b.Fatal(err)
		}
	}
}
