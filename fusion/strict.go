package fusion

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// The YAML decoder is lenient where mcc is not: it takes "yes", "on" and
// "y" (quoted or not) for true, and 1.0 for the integer 1. A string is
// never a boolean and a number with a fraction is never an integer here,
// as "100" was already refused for an integer: strictScalars finds the
// values the decoder let through and reports them as type errors.

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	yamlNodeType    = reflect.TypeOf(yaml.Node{})
)

// strictScalars walks the document against the type it decodes into and
// returns a problem per boolean or integer field whose value is not a YAML
// boolean or integer.
func strictScalars(file string, root *yaml.Node, t reflect.Type) []Problem {
	var out []Problem
	walkStrict(file, root, t, "", 0, &out)
	return out
}

func walkStrict(file string, n *yaml.Node, t reflect.Type, path string, depth int, out *[]Problem) {
	if n == nil || depth > maxIndexDepth {
		return
	}
	if n.Kind == yaml.AliasNode {
		walkStrict(file, n.Alias, t, path, depth+1, out)
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Types that decode themselves (Duration, ByteSize) judge their own
	// values; the gateway section belongs to package xds/gateway.
	if t == yamlNodeType || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!bool" {
			*out = append(*out, Problem{File: file, Line: n.Line, Field: path,
				Msg: fmt.Sprintf("wrong type: %s %s, want true or false (unquoted; a string is not a boolean)", scalarKind(n), strconv.Quote(truncate(n.Value, 40)))})
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!int" {
			*out = append(*out, Problem{File: file, Line: n.Line, Field: path,
				Msg: fmt.Sprintf("wrong type: %s %s, want an integer", scalarKind(n), strconv.Quote(truncate(n.Value, 40)))})
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := fieldsOf(t).byName
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fields[n.Content[i].Value]; ok {
				walkStrict(file, n.Content[i+1], ft, join(n.Content[i].Value), depth+1, out)
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			walkStrict(file, item, t.Elem(), path+"["+strconv.Itoa(i)+"]", depth+1, out)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkStrict(file, n.Content[i+1], t.Elem(), join(n.Content[i].Value), depth+1, out)
		}
	}
}

// scalarKind names a scalar's YAML type for messages.
func scalarKind(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!str":
		return "string"
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return strings.TrimPrefix(n.ShortTag(), "!!")
}

// yamlFields is what the strict decoder knows of a struct type: its YAML
// keys and their types. ok is false when the type has what knownFieldsOnly
// does not model (inline fields): the caller then lets the strict decoder
// judge.
type yamlFields struct {
	byName map[string]reflect.Type
	ok     bool
}

var yamlFieldsCache sync.Map // reflect.Type -> *yamlFields

// fieldsOf returns the YAML keys of struct type t as go.yaml.in/yaml/v3
// names them: the tag's name, or the lower-cased field name.
func fieldsOf(t reflect.Type) *yamlFields {
	if f, ok := yamlFieldsCache.Load(t); ok {
		return f.(*yamlFields)
	}
	f := &yamlFields{byName: make(map[string]reflect.Type, t.NumField()), ok: true}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.PkgPath != "" && !sf.Anonymous {
			continue
		}
		tag := sf.Tag.Get("yaml")
		if tag == "" && !strings.Contains(string(sf.Tag), ":") {
			tag = string(sf.Tag)
		}
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		if strings.Contains(flags, "inline") || sf.Anonymous {
			f.ok = false
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f.byName[name] = sf.Type
	}
	yamlFieldsCache.Store(t, f)
	return f
}

// knownFieldsOnly reports whether decoding n into t cannot meet a key the
// strict decoder (KnownFields) refuses: every mapping key decoded into a
// struct names one of its fields. It answers false when unsure (merge
// keys, non-scalar keys, inline fields, deep or aliased trees), so that a
// false only costs the strict decode, never a missed problem.
func knownFieldsOnly(n *yaml.Node, t reflect.Type, depth int) bool {
	if n == nil {
		return true
	}
	if depth > maxIndexDepth || n.Kind == yaml.AliasNode {
		return false
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == yamlNodeType || reflect.PointerTo(t).Implements(unmarshalerType) || t.Kind() == reflect.Interface {
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return true // a type error: the decode fails and says so
		}
		f := fieldsOf(t)
		if !f.ok {
			return false
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Value == "<<" || k.Tag == "!!merge" {
				return false
			}
			ft, ok := f.byName[k.Value]
			if !ok || !knownFieldsOnly(n.Content[i+1], ft, depth+1) {
				return false
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return true
		}
		for _, item := range n.Content {
			if !knownFieldsOnly(item, t.Elem(), depth+1) {
				return false
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value == "<<" || k.Tag == "!!merge" {
				return false
			}
			if !knownFieldsOnly(n.Content[i+1], t.Elem(), depth+1) {
				return false
			}
		}
	}
	return true
}
