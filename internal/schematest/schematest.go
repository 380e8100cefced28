// Package schematest validates JSON documents against the small subset of
// JSON Schema (draft 2020-12) that mcc's published schemas use: type,
// required, properties, additionalProperties, items, enum, const, pattern,
// minLength, maxLength, minimum, maximum and format "date-time".
//
// A schema that uses any other assertion keyword is refused when it is
// compiled, so a schema can never appear to constrain more than is checked.
// Annotation keywords ($schema, $id, title, description, ...) are accepted
// and ignored, as are formats other than date-time (the specification makes
// format an annotation by default).
//
// It is test code: only tests and test helpers import it, because a gateway
// never validates its own output against a schema at run time
// (internal/archtest's TestImportRules keeps test code out of both binaries).
package schematest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate compiles schemaJSON and validates docJSON against it.
func Validate(schemaJSON, docJSON []byte) error {
	s, err := Compile(schemaJSON)
	if err != nil {
		return err
	}
	return s.Validate(docJSON)
}

// Schema is a compiled schema, safe for concurrent use.
type Schema struct {
	root *node
}

// Compile parses a schema document.
func Compile(schemaJSON []byte) (*Schema, error) {
	v, err := decode(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	n, err := compile(v, "#")
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &Schema{root: n}, nil
}

// Validate checks one JSON document. The error, when not nil, is a
// *ValidationError listing every violation found.
func (s *Schema) Validate(docJSON []byte) error {
	v, err := decode(docJSON)
	if err != nil {
		return fmt.Errorf("document: %w", err)
	}
	var ve ValidationError
	s.root.check(v, "", &ve)
	if len(ve.Problems) > 0 {
		return &ve
	}
	return nil
}

// ValidationError lists the violations found in one document, each prefixed
// by the JSON Pointer of the offending value ("" is the document itself).
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "schema validation: " + strings.Join(e.Problems, "; ")
}

func (e *ValidationError) add(ptr, format string, args ...any) {
	if ptr == "" {
		ptr = "/"
	}
	e.Problems = append(e.Problems, ptr+": "+fmt.Sprintf(format, args...))
}

// annotations are keywords that do not assert anything.
var annotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true,
	"examples": true, "default": true, "deprecated": true, "readOnly": true, "writeOnly": true,
}

type node struct {
	types        []string // empty: any type
	required     []string
	properties   map[string]*node
	additional   *node // nil: anything goes; see noAdditional
	noAdditional bool
	items        *node
	enum         []any
	hasConst     bool
	constVal     any
	pattern      *regexp.Regexp
	minLength    *int
	maxLength    *int
	minimum      *json.Number
	maximum      *json.Number
	dateTime     bool
	falseSchema  bool
}

func compile(v any, at string) (*node, error) {
	switch v := v.(type) {
	case bool:
		return &node{falseSchema: !v}, nil
	case map[string]any:
		return compileObject(v, at)
	default:
		return nil, fmt.Errorf("%s: a schema must be an object or a boolean", at)
	}
}

func compileObject(m map[string]any, at string) (*node, error) {
	n := &node{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		where := at + "/" + k
		var err error
		switch k {
		case "type":
			n.types, err = stringOrStrings(val, where)
			for _, t := range n.types {
				if !slices.Contains([]string{"null", "boolean", "object", "array", "number", "string", "integer"}, t) {
					err = fmt.Errorf("%s: unknown type %q", where, t)
				}
			}
		case "required":
			if _, ok := val.([]any); !ok {
				return nil, fmt.Errorf("%s: must be an array of strings", where)
			}
			n.required, err = stringOrStrings(val, where)
		case "properties":
			props, ok := val.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be an object", where)
			}
			n.properties = make(map[string]*node, len(props))
			for name, ps := range props {
				if n.properties[name], err = compile(ps, where+"/"+name); err != nil {
					return nil, err
				}
			}
		case "additionalProperties":
			if b, ok := val.(bool); ok {
				n.noAdditional = !b
				break
			}
			n.additional, err = compile(val, where)
		case "items":
			n.items, err = compile(val, where)
		case "enum":
			list, ok := val.([]any)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%s: must be a non-empty array", where)
			}
			n.enum = list
		case "const":
			n.hasConst, n.constVal = true, val
		case "pattern":
			s, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("%s: must be a string", where)
			}
			if n.pattern, err = regexp.Compile(s); err != nil {
				err = fmt.Errorf("%s: %w", where, err)
			}
		case "minLength", "maxLength":
			var i int
			if i, err = nonNegativeInt(val, where); err == nil {
				if k == "minLength" {
					n.minLength = &i
				} else {
					n.maxLength = &i
				}
			}
		case "minimum", "maximum":
			num, ok := val.(json.Number)
			if !ok {
				return nil, fmt.Errorf("%s: must be a number", where)
			}
			if k == "minimum" {
				n.minimum = &num
			} else {
				n.maximum = &num
			}
		case "format":
			s, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("%s: must be a string", where)
			}
			n.dateTime = s == "date-time"
		default:
			if !annotations[k] {
				return nil, fmt.Errorf("%s: keyword not supported by this validator", where)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *node) check(v any, ptr string, ve *ValidationError) {
	if n.falseSchema {
		ve.add(ptr, "no value is allowed here")
		return
	}
	if len(n.types) > 0 && !slices.ContainsFunc(n.types, func(t string) bool { return hasType(v, t) }) {
		ve.add(ptr, "has type %s, want %s", typeOf(v), strings.Join(n.types, " or "))
		return
	}
	if n.enum != nil && !slices.ContainsFunc(n.enum, func(e any) bool { return equal(e, v) }) {
		ve.add(ptr, "value %s is not one of the allowed values", short(v))
	}
	if n.hasConst && !equal(n.constVal, v) {
		ve.add(ptr, "value %s, want %s", short(v), short(n.constVal))
	}
	switch v := v.(type) {
	case string:
		n.checkString(v, ptr, ve)
	case json.Number:
		n.checkNumber(v, ptr, ve)
	case map[string]any:
		n.checkObject(v, ptr, ve)
	case []any:
		if n.items != nil {
			for i, x := range v {
				n.items.check(x, ptr+"/"+strconv.Itoa(i), ve)
			}
		}
	}
}

func (n *node) checkString(s, ptr string, ve *ValidationError) {
	l := utf8.RuneCountInString(s)
	if n.minLength != nil && l < *n.minLength {
		ve.add(ptr, "shorter than %d characters", *n.minLength)
	}
	if n.maxLength != nil && l > *n.maxLength {
		ve.add(ptr, "longer than %d characters", *n.maxLength)
	}
	if n.pattern != nil && !n.pattern.MatchString(s) {
		ve.add(ptr, "value %q does not match pattern %q", s, n.pattern.String())
	}
	if n.dateTime && !isDateTime(s) {
		ve.add(ptr, "value %q is not an RFC 3339 date-time", s)
	}
}

func (n *node) checkNumber(num json.Number, ptr string, ve *ValidationError) {
	f, err := num.Float64()
	if err != nil {
		ve.add(ptr, "bad number %s", num)
		return
	}
	if n.minimum != nil {
		if lim, _ := n.minimum.Float64(); f < lim {
			ve.add(ptr, "%s is less than the minimum %s", num, *n.minimum)
		}
	}
	if n.maximum != nil {
		if lim, _ := n.maximum.Float64(); f > lim {
			ve.add(ptr, "%s is more than the maximum %s", num, *n.maximum)
		}
	}
}

func (n *node) checkObject(m map[string]any, ptr string, ve *ValidationError) {
	for _, r := range n.required {
		if _, ok := m[r]; !ok {
			ve.add(ptr, "required property %q is missing", r)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		child := ptr + "/" + escapePointer(k)
		if ps, ok := n.properties[k]; ok {
			ps.check(m[k], child, ve)
			continue
		}
		switch {
		case n.noAdditional:
			ve.add(ptr, "property %q is not allowed", k)
		case n.additional != nil:
			n.additional.check(m[k], child, ve)
		}
	}
}

// isDateTime accepts RFC 3339 date-times (section 5.6), including a
// lowercase "t"/"z" and fractional seconds, which time.RFC3339 parses.
func isDateTime(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	return err == nil && len(s) >= len("2006-01-02T15:04:05Z")
}

func hasType(v any, t string) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		num, ok := v.(json.Number)
		if !ok {
			return false
		}
		if _, err := num.Int64(); err == nil {
			return true
		}
		f, err := num.Float64()
		return err == nil && f == float64(int64(f))
	}
	return false
}

func typeOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		if hasType(v, "integer") {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// equal is JSON equality: numbers compare by value, objects and arrays deeply.
func equal(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		bn, ok := b.(json.Number)
		if !ok {
			return false
		}
		af, err1 := a.Float64()
		bf, err2 := bn.Float64()
		return err1 == nil && err2 == nil && af == bf
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equal(a[i], bl[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !equal(av, bv) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

func short(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

func stringOrStrings(v any, where string) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s: must hold strings only", where)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: must be a string or an array of strings", where)
}

func nonNegativeInt(v any, where string) (int, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: must be a non-negative integer", where)
	}
	i, err := num.Int64()
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%s: must be a non-negative integer", where)
	}
	return int(i), nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// decode parses exactly one JSON value, keeping numbers exact.
func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b[d.InputOffset():])) > 0 {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}
