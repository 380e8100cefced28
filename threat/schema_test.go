package threat_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mccgate/mcc/schema"
	"github.com/mccgate/mcc/threat"
)

type schemaDoc struct {
	Schema               string                     `json:"$schema"`
	AdditionalProperties *bool                      `json:"additionalProperties"`
	Required             []string                   `json:"required"`
	Properties           map[string]json.RawMessage `json:"properties"`
}

func loadSchema(t *testing.T) schemaDoc {
	t.Helper()
	var s schemaDoc
	if err := json.Unmarshal(schema.ThreatEventV1(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchemaMatchesEventType(t *testing.T) {
	s := loadSchema(t)
	if s.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %q, want draft 2020-12", s.Schema)
	}
	if s.AdditionalProperties == nil || *s.AdditionalProperties {
		t.Error("additionalProperties must be false")
	}

	// Every JSON field of Event plus every device key, and nothing else.
	var want, required []string
	et := reflect.TypeFor[threat.Event]()
	for f := range et.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		want = append(want, name)
		if opts != "omitempty" {
			required = append(required, name)
		}
	}
	want = append(want, threat.DeviceKeys...)
	var got []string
	for k := range s.Properties {
		got = append(got, k)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("schema properties:\n got %v\nwant %v", got, want)
	}
	// A field the encoder always writes is required; an omitempty one is not.
	sort.Strings(required)
	req := slices.Clone(s.Required)
	sort.Strings(req)
	if !slices.Equal(req, required) {
		t.Errorf("schema required:\n got %v\nwant %v", req, required)
	}
}

func TestSchemaReasonEnumIsAllReasons(t *testing.T) {
	var rc struct {
		Enum []threat.Reason `json:"enum"`
	}
	if err := json.Unmarshal(loadSchema(t).Properties["reasonCode"], &rc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rc.Enum, threat.AllReasons) {
		t.Errorf("reasonCode enum:\n got %v\nwant %v", rc.Enum, threat.AllReasons)
	}
	for _, r := range threat.AllReasons {
		if !r.Valid() {
			t.Errorf("%s is in AllReasons but has no default score", r)
		}
	}
	if len(threat.DefaultScores) != len(threat.AllReasons) {
		t.Errorf("%d default scores for %d reasons", len(threat.DefaultScores), len(threat.AllReasons))
	}
}

// The README documents every field and every reason code.
func TestSchemaReadmeDocumentsEverything(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "schema", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range loadSchema(t).Properties {
		if !bytes.Contains(readme, []byte("`"+k+"`")) {
			t.Errorf("schema/README.md does not document field %q", k)
		}
	}
	for _, r := range threat.AllReasons {
		row := fmt.Sprintf("| `%s` | %d |", r, threat.DefaultScores[r])
		if !bytes.Contains(readme, []byte(row)) {
			t.Errorf("schema/README.md has no reason row starting %q", row)
		}
	}
}
