package schematest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mccgate/mcc/internal/schematest"
)

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "test",
  "type": "object",
  "additionalProperties": false,
  "required": ["kind", "n"],
  "properties": {
    "kind": {"type": "string", "enum": ["a", "b"]},
    "n": {"type": "integer", "minimum": 0, "maximum": 10},
    "ratio": {"type": "number"},
    "v": {"const": "v1"},
    "id": {"type": "string", "pattern": "^[0-9a-f]{4}$"},
    "name": {"type": "string", "minLength": 2, "maxLength": 3},
    "at": {"type": "string", "format": "date-time"},
    "email": {"type": "string", "format": "email"},
    "opt": {"type": ["string", "null"]},
    "flag": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "never": false,
    "anything": true,
    "nested": {
      "type": "object",
      "additionalProperties": false,
      "required": ["x"],
      "properties": {"x": {"type": "integer"}}
    }
  }
}`

func TestValidateAccepts(t *testing.T) {
	for _, doc := range []string{
		`{"kind":"a","n":0}`,
		`{"kind":"b","n":10,"ratio":0.5,"v":"v1","id":"0a9f","name":"ab","at":"2026-11-28T12:00:00Z"}`,
		`{"kind":"a","n":3.0}`, // 3.0 is an integer in JSON Schema
		`{"kind":"a","n":1,"at":"2026-11-28t12:00:00.123456789+01:00","email":"not checked"}`,
		`{"kind":"a","n":1,"opt":null,"flag":false,"tags":["x","y"],"labels":{"k":"v"},"anything":{"deep":[1]}}`,
		`{"kind":"a","n":1,"nested":{"x":5}}`,
		"  {\"kind\":\"a\",\"n\":1}\n",
		`{"kind":"a","n":1,"name":"äöü"}`, // length counts characters, not bytes
	} {
		if err := schematest.Validate([]byte(schema), []byte(doc)); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	for doc, want := range map[string]string{
		`{"n":1}`:                                    `required property "kind"`,
		`{"kind":"c","n":1}`:                         "not one of the allowed values",
		`{"kind":1,"n":1}`:                           "has type integer, want string",
		`{"kind":"a","n":-1}`:                        "less than the minimum",
		`{"kind":"a","n":11}`:                        "more than the maximum",
		`{"kind":"a","n":1.5}`:                       "has type number, want integer",
		`{"kind":"a","n":"1"}`:                       "has type string, want integer",
		`{"kind":"a","n":1,"v":"v2"}`:                `want "v1"`,
		`{"kind":"a","n":1,"id":"0A9F"}`:             "does not match pattern",
		`{"kind":"a","n":1,"name":"a"}`:              "shorter than 2",
		`{"kind":"a","n":1,"name":"abcd"}`:           "longer than 3",
		`{"kind":"a","n":1,"at":"2026-11-28"}`:       "not an RFC 3339 date-time",
		`{"kind":"a","n":1,"at":"28/11/2026 12:00"}`: "not an RFC 3339 date-time",
		`{"kind":"a","n":1,"opt":3}`:                 "want string or null",
		`{"kind":"a","n":1,"flag":"true"}`:           "want boolean",
		`{"kind":"a","n":1,"tags":["x",2]}`:          "/tags/1: has type integer",
		`{"kind":"a","n":1,"labels":{"k":1}}`:        "/labels/k: has type integer",
		`{"kind":"a","n":1,"never":1}`:               "/never: no value is allowed",
		`{"kind":"a","n":1,"extra":1}`:               `property "extra" is not allowed`,
		`{"kind":"a","n":1,"nested":{}}`:             `/nested: required property "x"`,
		`{"kind":"a","n":1,"nested":{"x":1,"y":2}}`:  `property "y" is not allowed`,
		`[]`:                          "has type array, want object",
		`{"kind":"a","n":1} {}`:       "trailing data",
		`{"kind":"a",`:                "unexpected EOF",
		`{"kind":"a","n":1,"a/b~":1}`: `property "a/b~" is not allowed`,
	} {
		err := schematest.Validate([]byte(schema), []byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", doc, err, want)
		}
	}
}

func TestValidationErrorListsEveryProblem(t *testing.T) {
	err := schematest.Validate([]byte(schema), []byte(`{"kind":"z","n":-5,"extra":true}`))
	var ve *schematest.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v, want *ValidationError", err, err)
	}
	if len(ve.Problems) != 3 {
		t.Errorf("problems %q, want 3", ve.Problems)
	}
}

func TestCompileRefusesWhatItCannotCheck(t *testing.T) {
	for _, s := range []string{
		`{"type":"object","oneOf":[{"type":"string"}]}`,
		`{"properties":{"a":{"$ref":"#/$defs/x"}}}`,
		`{"type":"strnig"}`,
		`{"enum":[]}`,
		`{"pattern":"("}`,
		`{"minLength":-1}`,
		`{"minimum":"0"}`,
		`{"required":"a"}`,
		`"object"`,
		`{} trailing`,
	} {
		if _, err := schematest.Compile([]byte(s)); err == nil {
			t.Errorf("%s: compiled, want an error", s)
		}
	}
}
