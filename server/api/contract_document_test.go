package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vErrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/mccgate/mcc/schema"
	"github.com/mccgate/mcc/server/api"
)

// contractDoc is the served OpenAPI document decoded as plain JSON, for
// the checks that compare it with the code.
func contractDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(api.OpenAPIDocument(), &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// contractObj walks doc down the keys, failing when one is missing.
func contractObj(t *testing.T, doc map[string]any, keys ...string) map[string]any {
	t.Helper()
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("openapi.json has no object at %s", strings.Join(keys, "."))
		}
		cur = next
	}
	return cur
}

// TestOpenAPIDocumentValid: the document is OpenAPI 3.1 that libopenapi
// builds and validates without a single error.
func TestOpenAPIDocumentValid(t *testing.T) {
	doc, err := libopenapi.NewDocument(api.OpenAPIDocument())
	if err != nil {
		t.Fatalf("parsing openapi.json: %v", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", v)
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("building the model: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Errorf("openapi.json is not a valid OpenAPI 3.1 document:\n%s", contractErrors(verrs))
	}
}

// TestOpenAPIRoutesMatchDocument: every registered route is an operation
// of the document with the same scope, and every operation is a route.
// Scopes are declared as x-mcc-scope ("public" = no token) and public
// operations clear the document's default security.
func TestOpenAPIRoutesMatchDocument(t *testing.T) {
	doc := contractDoc(t)
	inDoc := map[string]string{} // "GET /v1/x" -> scope
	for path, item := range contractObj(t, doc, "paths") {
		for method, op := range item.(map[string]any) {
			o, ok := op.(map[string]any)
			if !ok {
				continue
			}
			key := strings.ToUpper(method) + " " + path
			scope, _ := o["x-mcc-scope"].(string)
			if scope == "" {
				t.Errorf("%s: no x-mcc-scope", key)
			}
			sec, hasSec := o["security"].([]any)
			if !hasSec || (scope == "public") != (len(sec) == 0) {
				t.Errorf("%s: security %v does not match x-mcc-scope %q", key, o["security"], scope)
			}
			inDoc[key] = scope
		}
	}
	inCode := map[string]string{}
	for _, r := range api.Routes() {
		scope := string(r.Scope)
		if scope == "" {
			scope = "public"
		}
		inCode[r.Method+" "+r.Pattern] = scope
	}
	for _, k := range slices.Sorted(maps.Keys(inCode)) {
		switch ds, ok := inDoc[k]; {
		case !ok:
			t.Errorf("route %s (scope %s) is missing from openapi.json", k, inCode[k])
		case ds != inCode[k]:
			t.Errorf("%s: scope %s in the code, %s in openapi.json", k, inCode[k], ds)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(inDoc)) {
		if _, ok := inCode[k]; !ok {
			t.Errorf("openapi.json describes %s, which api.Routes() does not register", k)
		}
	}
}

// TestOpenAPIProblemTypes: the document's problem types are exactly the
// ones the code can answer.
func TestOpenAPIProblemTypes(t *testing.T) {
	typ := contractObj(t, contractDoc(t), "components", "schemas", "Problem", "properties", "type")
	var inDoc []string
	for _, v := range typ["enum"].([]any) {
		inDoc = append(inDoc, strings.TrimPrefix(v.(string), "urn:mcc:problem:"))
	}
	inCode := api.ProblemNames()
	sort.Strings(inDoc)
	sort.Strings(inCode)
	if !slices.Equal(inDoc, inCode) {
		t.Errorf("problem types in openapi.json %v, in the code %v", inDoc, inCode)
	}
}

// TestOpenAPIThreatEventInSync: the document's copy of the threat event
// schema is schema/threat-event.v1.json (an OpenAPI document must be self
// contained, so it cannot refer to the file). EventIn and StoredEvent add
// back the additionalProperties rule as unevaluatedProperties.
func TestOpenAPIThreatEventInSync(t *testing.T) {
	copied := contractObj(t, contractDoc(t), "components", "schemas", "ThreatEvent")
	var orig map[string]any
	if err := json.Unmarshal(schema.ThreatEventV1(), &orig); err != nil {
		t.Fatal(err)
	}
	if orig["additionalProperties"] != false {
		t.Fatalf("schema/threat-event.v1.json no longer refuses additional properties: revisit EventIn/StoredEvent in openapi.json")
	}
	for _, k := range []string{"$schema", "$id", "additionalProperties", "description"} {
		delete(orig, k)
	}
	delete(copied, "description")
	if !reflect.DeepEqual(copied, orig) {
		t.Errorf("components.schemas.ThreatEvent differs from schema/threat-event.v1.json: copy the file's members (without $schema, $id, additionalProperties) into it")
	}
}

// TestOpenAPIServed: GET /v1/openapi.json answers the embedded document,
// without a token.
func TestOpenAPIServed(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Deps{}).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if string(body) != string(api.OpenAPIDocument()) {
		t.Errorf("served document differs from openapi.json")
	}
}

// contractErrors formats the validator's errors, one a line, with the
// schema failures under them.
func contractErrors(errs []*vErrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  %s: %s\n", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "    %s at %s (%s)\n", f.Reason, f.FieldPath, f.KeywordLocation)
		}
	}
	return b.String()
}

// TestAPIDocListsProblems: docs/api.md, the reference people read, lists
// every problem type the code can answer.
func TestAPIDocListsProblems(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range api.ProblemNames() {
		if !strings.Contains(string(doc), "| `"+n+"` |") {
			t.Errorf("docs/api.md does not list the problem type %s in its table", n)
		}
	}
}
