package translate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/mccgate/mcc/xds"
	"github.com/mccgate/mcc/xds/translate"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the current translation")

// TestGolden translates every testdata/*.in.yaml (a fusion set file with a
// gateway section, loaded as mcc xds loads it) and compares the resources,
// by node group, type and name, as YAML with testdata/*.out.yaml.
// Regenerate with `go test ./xds/translate -run Golden -update` and read
// the diff: it is exactly what Envoys would receive differently.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no testdata/*.in.yaml: %v", err)
	}
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := xds.Load(in)
			if err != nil {
				t.Fatalf("loading: %v", err)
			}
			got := goldenYAML(t, build(t, cfg.Input))
			// Paths resolved against testdata are machine-dependent.
			got = bytes.ReplaceAll(got, []byte(abs), []byte("$TESTDATA"))
			out := filepath.Join("testdata", name+".out.yaml")
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("translation of %s differs from %s (run with -update and read the diff):\n%s", in, out, firstDiff(want, got))
			}
		})
	}
}

// TestGoldenCoversTheExample: the example's fusion set file is one of the
// golden inputs, verbatim.
func TestGoldenCoversTheExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "envoy", "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "examples-envoy.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(example, golden) {
		t.Error("testdata/examples-envoy.in.yaml is not examples/envoy/fusion-sets.yaml: copy it over and run with -update")
	}
}

// goldenYAML renders groups as YAML: group, then type, then resources in
// name order, each as its protojson form (Any contents expanded).
func goldenYAML(t *testing.T, groups map[string]translate.Resources) []byte {
	t.Helper()
	out := map[string]map[string][]json.RawMessage{}
	for group, res := range groups {
		out[group] = map[string][]json.RawMessage{}
		for typ, rs := range res {
			sorted := append([]types.Resource(nil), rs...)
			sort.Slice(sorted, func(i, j int) bool { return cachev3.GetResourceName(sorted[i]) < cachev3.GetResourceName(sorted[j]) })
			label := typ[strings.LastIndex(typ, ".")+1:]
			for _, r := range sorted {
				b, err := protojson.Marshal(r)
				if err != nil {
					t.Fatalf("%s %s: %v", typ, cachev3.GetResourceName(r), err)
				}
				out[group][label] = append(out[group][label], b)
			}
		}
	}
	j, err := json.Marshal(out) // map keys sorted
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// firstDiff shows the first differing line with some context.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return "(no line differs)"
}
