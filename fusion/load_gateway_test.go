package fusion_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// LoadFileWithGateway parses the file once and hands back the gateway
// section with the file's line numbers, also when the sets have problems,
// and with the ids the file declares.
func TestLoadFileWithGateway(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	good, err := os.ReadFile(c.SetFile)
	if err != nil {
		t.Fatal(err)
	}
	gateway := "gateway:\n  authz:\n    address: 127.0.0.1:9001\n  listeners: []\n"
	// The section first: its lines are the file's, and the sets' problems
	// keep theirs.
	text := gateway + string(good)
	path := filepath.Join(c.Dir, "gw.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, gs, err := fusion.LoadFileWithGateway(path)
	if err != nil {
		t.Fatal(err)
	}
	if gs.Node == nil || gs.Node.Line != 2 || cfg.File.Gateway != gs.Node || gs.BaseDir != c.Dir || gs.File != path {
		t.Fatalf("section = %+v", gs)
	}
	if authz := gs.Node.Content[1]; authz.Line != 3 {
		t.Fatalf("authz at line %d, want 3", authz.Line)
	}
	if !gs.HasSet(c.SetID) || gs.HasSet("other") {
		t.Fatalf("set ids = %v", gs.SetIDs)
	}

	broken := strings.Replace(text, "mode: defense", "mode: audit", 1)
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, gs, err = fusion.LoadFileWithGateway(path)
	if err == nil || cfg != nil {
		t.Fatal("a bad mode loaded")
	}
	if gs == nil || gs.Node == nil || gs.Node.Line != 2 || !gs.HasSet(c.SetID) {
		t.Fatalf("section with set problems = %+v", gs)
	}
	modeLine := 0
	for i, l := range strings.Split(broken, "\n") {
		if strings.Contains(l, "mode: audit") {
			modeLine = i + 1
		}
	}
	if want := ":" + strconv.Itoa(modeLine) + ": fusion_sets[0].mode"; !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %s", err, want)
	}

	// No section: nil node, still the ids; not YAML: no section.
	if _, gs, err = fusion.LoadFileWithGateway(c.SetFile); err != nil || gs == nil || gs.Node != nil || !gs.HasSet(c.SetID) {
		t.Fatalf("without a section: %+v, %v", gs, err)
	}
	if err := os.WriteFile(path, []byte("fusion_sets: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, gs, err = fusion.LoadFileWithGateway(path); err == nil || gs != nil {
		t.Fatalf("not YAML: %+v, %v", gs, err)
	}
}
