// Package archtest holds the import rules of docs/ARCHITECTURE.md
// ("Packages") as a test, so that a change which breaks a layer fails here
// with the chain of imports that does it, instead of being found in review.
package archtest

import (
	"fmt"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mccgate/mcc"

// Layers, from the bottom. Each package of the module is in exactly one.
const (
	layerCore    = "core"    // fusion, threat, pki, schema: the policy, no gateway
	layerSupport = "support" // internal/* that production code uses (cfgerr, secure, filewatch)
	layerKit     = "kit"     // adapter: the rules both gateways share
	layerGateway = "gateway" // caddymod, envoyext, xds/...
	layerServer  = "server"  // server/...: mcc server (API, database, CA keys); gateways reach it over HTTP only
	layerFace    = "face"    // cmd/..., quickstart, the module root (what xcaddy links)
	layerTest    = "test"    // helpers and harnesses that only tests import
)

// testHarnesses are directories of tests, benchmarks and examples: not
// production, whatever their names.
var testHarnesses = []string{"bench", "doctest", "examples", "fleet", "parity", "internal/archtest"}

// layerOf places a module package (path relative to the module, "" for the
// root) in its layer; "" means it fits none, which TestEveryPackageHasALayer
// reports so that a new package gets a place in the document and here.
func layerOf(rel string) string {
	switch {
	case isTestOnly(rel):
		return layerTest
	case under(rel, "fusion", "threat", "pki", "schema"):
		return layerCore
	case under(rel, "internal"):
		return layerSupport
	case under(rel, "adapter"):
		return layerKit
	case under(rel, "caddymod", "envoyext", "xds"):
		return layerGateway
	case under(rel, "server"):
		return layerServer
	case rel == "" || under(rel, "cmd", "quickstart"):
		return layerFace
	}
	return ""
}

// isTestOnly is the naming rule for test code: a package whose last element
// ends in "test" or "testing" or starts with "test" (fusiontest, threattest,
// envoytest, xdstest, redistest, webhooktest, redisstreamtest, schematest,
// caddytesting, testpki), plus the harness directories.
func isTestOnly(rel string) bool {
	base := path.Base(rel)
	return strings.HasSuffix(base, "test") || strings.HasSuffix(base, "testing") ||
		strings.HasPrefix(base, "test") || under(rel, testHarnesses...)
}

// under reports whether rel is one of dirs or inside one.
func under(rel string, dirs ...string) bool {
	for _, d := range dirs {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

// rule forbids packages matching from to reach (directly or through other
// packages) any package for which forbidden is true.
type rule struct {
	name      string
	from      func(rel string) bool
	forbidden func(importPath string) bool
}

func inLayer(layers ...string) func(string) bool {
	return func(rel string) bool { return slices.Contains(layers, layerOf(rel)) }
}

func dirs(ds ...string) func(string) bool {
	return func(rel string) bool { return under(rel, ds...) }
}

// ours turns a relative-path predicate into one over import paths that is
// false outside the module.
func ours(f func(string) bool) func(string) bool {
	return func(p string) bool {
		rel, ok := relative(p)
		return ok && f(rel)
	}
}

// external matches import paths of other modules by prefix.
func external(prefixes ...string) func(string) bool {
	return func(p string) bool {
		for _, pre := range prefixes {
			if p == pre || strings.HasPrefix(p, pre+"/") {
				return true
			}
		}
		return false
	}
}

func either(fs ...func(string) bool) func(string) bool {
	return func(p string) bool {
		for _, f := range fs {
			if f(p) {
				return true
			}
		}
		return false
	}
}

// gatewayLibraries are what a gateway adapter is built on; the core and the
// kit never link them, so the policy can be used and tested without either.
var gatewayLibraries = external("github.com/caddyserver/caddy/v2", "github.com/envoyproxy/go-control-plane", "google.golang.org/grpc")

// rules are the import rules of docs/ARCHITECTURE.md, "Packages".
var rules = []rule{
	{"the core imports no kit, gateway, command or test code, and neither Caddy, go-control-plane nor gRPC",
		inLayer(layerCore), either(ours(inLayer(layerKit, layerGateway, layerServer, layerFace, layerTest)), gatewayLibraries)},
	{"internal support packages import nothing above them",
		inLayer(layerSupport), ours(inLayer(layerCore, layerKit, layerGateway, layerServer, layerFace, layerTest))},
	{"the adapter kit imports no gateway, server, command or test code, and neither Caddy nor go-control-plane",
		inLayer(layerKit), either(ours(inLayer(layerGateway, layerServer, layerFace, layerTest)), gatewayLibraries)},
	{"gateways import no server, command or test code (they reach mcc server over HTTP only, so they enforce while it is down)",
		inLayer(layerGateway), ours(inLayer(layerServer, layerFace, layerTest))},
	{"the server imports no gateway, kit, command or test code, and neither Caddy nor go-control-plane",
		inLayer(layerServer), either(ours(inLayer(layerKit, layerGateway, layerFace, layerTest)), external("github.com/caddyserver/caddy/v2", "github.com/envoyproxy/go-control-plane"))},
	{"caddymod imports neither Envoy side (envoyext, xds)",
		dirs("caddymod"), ours(dirs("envoyext", "xds"))},
	{"the Envoy side (envoyext, xds) never imports caddymod",
		dirs("envoyext", "xds"), ours(dirs("caddymod"))},
	{"xds/translate (config to protos) never imports xds/serve (gRPC)",
		dirs("xds/translate"), ours(dirs("xds/serve"))},
	{"xds/serve (gRPC, snapshots) knows nothing of fusion sets",
		dirs("xds/serve"), ours(dirs("fusion", "xds/translate", "xds/gateway"))},
	{"commands and the module root (cmd/caddy, cmd/mcc, what xcaddy links) link no test code",
		inLayer(layerFace), ours(inLayer(layerTest))},
}

// graph maps an import path to the import paths its non-test files import.
type graph map[string][]string

// violation is one forbidden package a rule's package reaches, with the
// chain of imports that reaches it.
type violation struct {
	rule  string
	chain []string
}

func (v violation) String() string {
	chain := make([]string, len(v.chain))
	for i, p := range v.chain {
		chain[i] = short(p)
	}
	return fmt.Sprintf("%s: %s", v.rule, strings.Join(chain, " -> "))
}

// short is an import path without the module prefix (the root stays whole).
func short(p string) string { return strings.TrimPrefix(p, module+"/") }

// check applies rules to every module package in g, reporting for each
// package and rule the first forbidden package found (breadth first, so the
// chain shown is a shortest one).
func check(g graph, rules []rule) []violation {
	var out []violation
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		rel, ok := relative(p)
		if !ok {
			continue
		}
		for _, r := range rules {
			if !r.from(rel) {
				continue
			}
			if chain := reach(g, p, r.forbidden); chain != nil {
				out = append(out, violation{rule: r.name, chain: chain})
			}
		}
	}
	return out
}

// reach returns the import chain from start to the nearest package for
// which bad is true, or nil.
func reach(g graph, start string, bad func(string) bool) []string {
	parent := map[string]string{start: ""}
	queue := []string{start}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range g[p] {
			if _, seen := parent[q]; seen {
				continue
			}
			parent[q] = p
			if bad(q) {
				var chain []string
				for c := q; c != ""; c = parent[c] {
					chain = append(chain, c)
				}
				slices.Reverse(chain)
				return chain
			}
			queue = append(queue, q)
		}
	}
	return nil
}

// relative returns p relative to the module ("" for the root) and whether p
// is in the module.
func relative(p string) (string, bool) {
	if p == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(p, module+"/")
	return rel, ok
}

// loadGraph is the import graph of every module package and everything it
// depends on, from go list (non-test files only: test files may import
// anything).
func loadGraph(t *testing.T) graph {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	g := graph{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	return g
}
