package gateway_test

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/xds/gateway"
)

// FuzzDecode: any YAML under gateway: is either decoded or refused with
// problems; it never panics, and a refusal always says where.
func FuzzDecode(f *testing.F) {
	f.Add(goodSection)
	f.Add("gateway:\n  listeners: [{name: a, port: 1, routes: [{host: '*.x', fusion_set: app-a, upstream: u}]}]\n")
	f.Add("gateway: &a\n  authz: *a\n")
	f.Add("gateway:\n  node_groups: [{cluster: c, listeners: [a, a]}]\n  upstreams: {}\n")
	f.Add("gateway: 7\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		var doc yaml.Node
		if yaml.Unmarshal([]byte(text), &doc) != nil || len(doc.Content) == 0 {
			return
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value != "gateway" {
				continue
			}
			g, err := gateway.Decode(root.Content[i+1], gateway.Options{File: "f.yaml", BaseDir: dir,
				FusionSet: func(id string) bool { return id == "app-a" }})
			if err == nil && g == nil {
				t.Fatal("no gateway and no error")
			}
			if e, ok := err.(*gateway.Error); err != nil && (!ok || len(e.Problems) == 0) {
				t.Fatalf("error without problems: %v", err)
			}
		}
	})
}
