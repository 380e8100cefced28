package fusion

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

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
		fields := make(map[string]reflect.Type, t.NumField())
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f.Type
		}
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
