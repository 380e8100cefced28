package archtest

import (
	"strings"
	"testing"
)

// TestImportRules checks the module's real import graph against the rules
// of docs/ARCHITECTURE.md ("Packages").
func TestImportRules(t *testing.T) {
	g := loadGraph(t)
	// One breaching import shows up in every package above it: report it
	// once per rule, with the packages it reaches from.
	type edge struct{ rule, from, to string }
	var order []edge
	reached := map[edge][]string{}
	for _, v := range check(g, rules) {
		n := len(v.chain)
		e := edge{v.rule, short(v.chain[n-2]), short(v.chain[n-1])}
		if _, ok := reached[e]; !ok {
			order = append(order, e)
		}
		reached[e] = append(reached[e], short(v.chain[0]))
	}
	for _, e := range order {
		t.Errorf("%s: %s imports %s (reached from %s)", e.rule, e.from, e.to, strings.Join(reached[e], ", "))
	}
}

// TestEveryPackageHasALayer: a package the layers do not place is checked
// by no rule, so a new package must get a place (here and in the document).
func TestEveryPackageHasALayer(t *testing.T) {
	g := loadGraph(t)
	n := 0
	for p := range g {
		rel, ok := relative(p)
		if !ok {
			continue
		}
		n++
		if layerOf(rel) == "" {
			t.Errorf("package %s is in no layer: give it one in docs/ARCHITECTURE.md (\"Packages\") and in layerOf", p)
		}
	}
	// The graph must hold the module, or every rule passes vacuously.
	for _, want := range []string{"fusion", "threat", "pki", "adapter", "caddymod", "envoyext", "xds/translate", "xds/serve", "server/api", "server/store", "cmd/mcc", "cmd/caddy"} {
		if _, ok := g[module+"/"+want]; !ok {
			t.Fatalf("go list did not report %s (%d module packages seen)", want, n)
		}
	}
}

// TestLayerOf pins the classification of the packages the rules name, so a
// renamed directory cannot silently fall out of its layer.
func TestLayerOf(t *testing.T) {
	for rel, want := range map[string]string{
		"":                                   layerFace,
		"cmd/mcc":                            layerFace,
		"cmd/caddy":                          layerFace,
		"quickstart":                         layerFace,
		"fusion":                             layerCore,
		"fusion/crlmetrics":                  layerCore,
		"threat/webhook":                     layerCore,
		"pki/certid":                         layerCore,
		"schema":                             layerCore,
		"internal/cfgerr":                    layerSupport,
		"internal/filewatch":                 layerSupport,
		"adapter":                            layerKit,
		"server":                             layerServer,
		"server/api":                         layerServer,
		"server/store":                       layerServer,
		"internal/pgtest":                    layerTest,
		"caddymod":                           layerGateway,
		"envoyext":                           layerGateway,
		"xds/serve":                          layerGateway,
		"fusion/fusiontest":                  layerTest,
		"threat/webhook/webhooktest":         layerTest,
		"threat/redisstream/redisstreamtest": layerTest,
		"internal/testpki":                   layerTest,
		"internal/redistest":                 layerTest,
		"internal/caddytesting":              layerTest,
		"internal/schematest":                layerTest,
		"envoyext/envoytest":                 layerTest,
		"xds/xdstest":                        layerTest,
		"bench/authz":                        layerTest,
		"parity":                             layerTest,
		"fleet":                              layerTest,
		"doctest":                            layerTest,
		"examples/envoy":                     layerTest,
		"internal/archtest":                  layerTest,
		"fusionx":                            "",
	} {
		if got := layerOf(rel); got != want {
			t.Errorf("layerOf(%q) = %q, want %q", rel, got, want)
		}
	}
}

// TestCheckFindsViolations feeds the checker a made-up graph with one
// breach of each kind, so that a checker which finds nothing cannot pass
// for a clean tree.
func TestCheckFindsViolations(t *testing.T) {
	m := func(rel string) string {
		if rel == "" {
			return module
		}
		return module + "/" + rel
	}
	g := graph{
		m("fusion"):            {m("threat"), m("internal/cfgerr")},
		m("threat"):            {m("threat/redisstore")},
		m("threat/redisstore"): {m("caddymod")}, // core reaches a gateway, two steps down
		m("internal/cfgerr"):   {"errors"},
		m("adapter"):           {m("fusion"), "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"},
		m("caddymod"):          {m("adapter"), m("xds/gateway")},
		m("xds/gateway"):       {m("internal/cfgerr")},
		m("envoyext"):          {m("server/store")},
		m("server/api"):        {m("server/store"), m("adapter")},
		m("server/store"):      {m("pki")},
		m("pki"):               nil,
		m("xds/translate"):     {m("xds/serve")},
		m("xds/serve"):         {m("fusion")},
		m("cmd/mcc"):           {m("xds/serve"), m("threat/threattest")},
		m("threat/threattest"): {m("threat")},
		m(""):                  {m("caddymod")},
		"errors":               nil,
	}
	got := map[string]bool{}
	for _, v := range check(g, rules) {
		got[v.String()] = true
	}
	for _, want := range []string{
		"the core imports no kit, gateway, command or test code, and neither Caddy, go-control-plane nor gRPC: threat/redisstore -> caddymod",
		"the core imports no kit, gateway, command or test code, and neither Caddy, go-control-plane nor gRPC: fusion -> threat -> threat/redisstore -> caddymod",
		"the adapter kit imports no gateway, server, command or test code, and neither Caddy nor go-control-plane: adapter -> github.com/envoyproxy/go-control-plane/envoy/config/core/v3",
		"caddymod imports neither Envoy side (envoyext, xds): caddymod -> xds/gateway",
		"xds/translate (config to protos) never imports xds/serve (gRPC): xds/translate -> xds/serve",
		"xds/serve (gRPC, snapshots) knows nothing of fusion sets: xds/serve -> fusion",
		"commands and the module root (cmd/caddy, cmd/mcc, what xcaddy links) link no test code: cmd/mcc -> threat/threattest",
		"gateways import no server, command or test code (they reach mcc server over HTTP only, so they enforce while it is down): envoyext -> server/store",
		"the server imports no gateway, kit, command or test code, and neither Caddy nor go-control-plane: server/api -> adapter",
	} {
		if !got[want] {
			t.Errorf("missing violation %q", want)
		}
	}
	// Test helpers may import anything; the clean parts report nothing.
	for v := range got {
		for _, clean := range []string{": threat/threattest ->", ": internal/cfgerr ->", ": xds/gateway ->"} {
			if strings.Contains(v, clean) {
				t.Errorf("unexpected violation %q", v)
			}
		}
	}
}
