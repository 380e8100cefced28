package fusion

import (
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file maps field paths ("fusion_sets[0].trusted_ca.file") to YAML line
// numbers, and turns the decoder's type errors into Problems, so that every
// message, structural or semantic, names file, line and field.

// nodeEntry is one mapping entry or sequence item of the parsed document.
type nodeEntry struct {
	path string
	key  *yaml.Node // nil for sequence items
	val  *yaml.Node
}

// nodeIndex locates fields of one parsed document.
type nodeIndex struct {
	entries []nodeEntry
	byPath  map[string]int
}

func newNodeIndex(doc *yaml.Node) *nodeIndex {
	ix := &nodeIndex{byPath: make(map[string]int)}
	if doc == nil {
		return ix
	}
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	// Sized up front: growing a map of every path of a thousand sets
	// costs more than walking the tree twice.
	n := countEntries(root, 0)
	ix.byPath = make(map[string]int, n)
	ix.entries = make([]nodeEntry, 0, n)
	ix.walk("", root, 0)
	return ix
}

// countEntries is how many entries walk adds for n.
func countEntries(n *yaml.Node, depth int) int {
	if n == nil || depth > maxIndexDepth {
		return 0
	}
	c := 0
	switch n.Kind {
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			c += 1 + countEntries(n.Content[i], depth+1)
		}
	case yaml.SequenceNode:
		for _, v := range n.Content {
			c += 1 + countEntries(v, depth+1)
		}
	}
	return c
}

// maxIndexDepth bounds recursion on hostile documents.
const maxIndexDepth = 64

func (ix *nodeIndex) walk(path string, n *yaml.Node, depth int) {
	if n == nil || depth > maxIndexDepth {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ix.add(nodeEntry{path: p, key: k, val: v})
			ix.walk(p, v, depth+1)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			ix.add(nodeEntry{path: p, val: v})
			ix.walk(p, v, depth+1)
		}
	}
}

func (ix *nodeIndex) add(e nodeEntry) {
	if _, dup := ix.byPath[e.path]; !dup {
		ix.byPath[e.path] = len(ix.entries)
	}
	ix.entries = append(ix.entries, e)
}

// line returns the line of path, or of its closest existing parent (a
// missing field is reported where its parent starts), or 0.
func (ix *nodeIndex) line(path string) int {
	for path != "" {
		if i, ok := ix.byPath[path]; ok {
			e := ix.entries[i]
			if e.key != nil {
				return e.key.Line
			}
			return e.val.Line
		}
		path = parentPath(path)
	}
	return 0
}

// valueLine returns the line of path's value when it is a scalar (which may
// sit on another line than its key), else the line of its key, falling
// back to line.
func (ix *nodeIndex) valueLine(path string) int {
	if i, ok := ix.byPath[path]; ok {
		if e := ix.entries[i]; e.val.Kind == yaml.ScalarNode || e.key == nil {
			return e.val.Line
		}
	}
	return ix.line(path)
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Decoder error texts (go.yaml.in/yaml/v3).
var (
	reLine       = regexp.MustCompile(`^line (\d+): (.*)$`)
	reNotFound   = regexp.MustCompile(`^field (.+) not found in type .+$`)
	reAlreadySet = regexp.MustCompile(`^field (.+) already set in type .+$`)
	reUnmarshal  = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
)

// typeProblems converts a yaml.TypeError's messages into Problems.
func (ix *nodeIndex) typeProblems(file string, errs []string) []Problem {
	out := make([]Problem, 0, len(errs))
	for _, s := range errs {
		m := reLine.FindStringSubmatch(s)
		if m == nil {
			out = append(out, Problem{File: file, Msg: s})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		switch {
		case reNotFound.MatchString(msg):
			name := reNotFound.FindStringSubmatch(msg)[1]
			out = append(out, Problem{File: file, Line: line, Field: ix.keyAt(line, name), Msg: "unknown field"})
		case reAlreadySet.MatchString(msg):
			name := reAlreadySet.FindStringSubmatch(msg)[1]
			out = append(out, Problem{File: file, Line: line, Field: ix.keyAt(line, name), Msg: "field given twice"})
		case reUnmarshal.MatchString(msg):
			sm := reUnmarshal.FindStringSubmatch(msg)
			field := ix.valueAt(line, sm[2])
			out = append(out, Problem{File: file, Line: line, Field: field, Msg: "wrong type: " + describeGot(sm[1], sm[2]) + ", want " + describeGoType(sm[3])})
		default:
			out = append(out, Problem{File: file, Line: line, Field: ix.valueAt(line, ""), Msg: msg})
		}
	}
	return out
}

// keyAt finds the path of the mapping key name on line.
func (ix *nodeIndex) keyAt(line int, name string) string {
	for _, e := range ix.entries {
		if e.key != nil && e.key.Line == line && e.key.Value == name {
			return e.path
		}
	}
	return name
}

// valueAt finds the path of the value on line whose text starts with prefix
// (the decoder quotes at most 7 characters followed by "...").
func (ix *nodeIndex) valueAt(line int, quoted string) string {
	prefix := strings.TrimSuffix(quoted, "...")
	found := ""
	for _, e := range ix.entries {
		if e.val.Line != line {
			continue
		}
		if e.val.Kind == yaml.ScalarNode && !strings.HasPrefix(e.val.Value, prefix) {
			continue
		}
		found = e.path
		if e.val.Kind == yaml.ScalarNode {
			break
		}
	}
	return found
}

func describeGot(tag, value string) string {
	kind := map[string]string{
		"str": "string", "int": "integer", "bool": "boolean", "float": "number",
		"map": "mapping", "seq": "list", "null": "null", "timestamp": "timestamp",
		"binary": "binary",
	}[tag]
	if kind == "" {
		kind = tag
	}
	if value != "" {
		return kind + " " + strconv.Quote(value)
	}
	return kind
}

func describeGoType(t string) string {
	switch t {
	case "int":
		return "an integer"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "map[string]int":
		return "a mapping of reason codes to integer scores"
	case "map[string]string":
		return "a mapping of strings to strings"
	case "[]fusion.SetConfig":
		return "a list of fusion sets"
	case "*bool":
		return "true or false"
	}
	if strings.HasPrefix(t, "fusion.") || strings.HasPrefix(t, "*fusion.") {
		return "a mapping"
	}
	return t
}

// has reports whether field (relative to the set) is written in the file;
// false for inline sets, which have no file.
func (c *setCompiler) has(field string) bool {
	if c.ix == nil {
		return false
	}
	_, ok := c.ix.byPath[c.path(field)]
	return ok
}
