package gateway

import (
	"strconv"

	"go.yaml.in/yaml/v3"
)

// reader walks the gateway YAML node by hand instead of decoding it into
// structs: that way every problem (unknown key, wrong type, bad value) is
// reported with the file, the line of the offending node and its field path,
// and one pass collects every problem rather than stopping at the first.
type reader struct {
	file     string
	problems []Problem
}

func (r *reader) addf(n *yaml.Node, field, msg string) {
	line := 0
	if n != nil {
		line = n.Line
	}
	r.problems = append(r.problems, Problem{File: r.file, Line: line, Field: field, Msg: msg})
}

// field is one known key of a mapping and what to do with its value.
type field struct {
	name string
	set  func(path string, v *yaml.Node)
}

// mapping reads n as a mapping whose keys must all be among fields. Unknown
// and repeated keys are problems. It returns false when n is not a mapping.
func (r *reader) mapping(n *yaml.Node, path string, fields ...field) bool {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		r.addf(n, path, "must be a mapping")
		return false
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if seen[k.Value] {
			r.addf(k, p, "field given twice")
			continue
		}
		seen[k.Value] = true
		found := false
		for _, f := range fields {
			if f.name == k.Value {
				f.set(p, v)
				found = true
				break
			}
		}
		if !found {
			r.addf(k, p, "unknown field")
		}
	}
	return true
}

// sequence reads n as a list and calls item for every element.
func (r *reader) sequence(n *yaml.Node, path string, item func(path string, v *yaml.Node)) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		r.addf(n, path, "must be a list")
		return
	}
	for i, v := range n.Content {
		item(path+"["+strconv.Itoa(i)+"]", v)
	}
}

// scalar returns the value of a scalar node, or false (with a problem) when
// n is a mapping, a list or null.
func (r *reader) scalar(n *yaml.Node, path, want string) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		r.addf(n, path, "must be "+want)
		return "", false
	}
	return n.Value, true
}

// str reads a string scalar; ok is false (with a problem) for anything else.
func (r *reader) str(n *yaml.Node, path string) (string, bool) {
	s, ok := r.scalar(n, path, "a string")
	if ok && resolve(n).Tag != "!!str" {
		r.addf(n, path, "must be a string, got "+strconv.Quote(s)+" (quote it)")
		return "", false
	}
	return s, ok
}

// text reads a string that must not be empty.
func (r *reader) text(n *yaml.Node, path string) string {
	s, ok := r.str(n, path)
	if ok && s == "" {
		r.addf(n, path, "must not be empty")
	}
	return s
}

func (r *reader) boolean(n *yaml.Node, path string) bool {
	s, ok := r.scalar(n, path, "true or false")
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil || resolve(n).Tag != "!!bool" {
		r.addf(n, path, "must be true or false, got "+strconv.Quote(s))
		return false
	}
	return b
}

// port reads a TCP port (1-65535).
func (r *reader) port(n *yaml.Node, path string) uint32 {
	s, ok := r.scalar(n, path, "a port number")
	if !ok {
		return 0
	}
	p, err := strconv.ParseUint(s, 10, 32)
	if err != nil || resolve(n).Tag != "!!int" || p < 1 || p > 65535 {
		r.addf(n, path, "must be a port number between 1 and 65535, got "+strconv.Quote(s))
		return 0
	}
	return uint32(p)
}

// resolve follows YAML aliases so that anchors work like plain values.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
