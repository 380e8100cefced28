package fusion_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
)

// TestExampleDocumentsEveryKey: every key a fusion set takes (the yaml
// names of SetConfig, nested blocks included) appears in
// examples/fusion-sets.yaml, set or in a comment as "key:", so a new key
// is documented where operators look for it.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "examples", "fusion-sets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	setConfigKeys(reflect.TypeFor[fusion.SetConfig](), "", keys)
	if len(keys) < 30 {
		t.Fatalf("found only %d keys: the walk is broken", len(keys))
	}
	for path := range keys {
		name := path[strings.LastIndex(path, ".")+1:]
		if !regexp.MustCompile(`(?m)(^|[\s#{,(])` + regexp.QuoteMeta(name) + `:`).Match(data) {
			t.Errorf("examples/fusion-sets.yaml does not document %s", path)
		}
	}
}

// setConfigKeys adds the yaml keys of struct type typ (and of the structs
// it holds) under prefix.
func setConfigKeys(typ reflect.Type, prefix string, keys map[string]bool) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return
	}
	for f := range typ.Fields() {
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			if strings.Contains(tag, "inline") {
				setConfigKeys(f.Type, prefix, keys)
			}
			continue
		}
		keys[prefix+name] = true
		setConfigKeys(f.Type, prefix+name+".", keys)
	}
}
