package api

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/fusion"
)

// A fusion set document received over the API is checked in two passes.
// The first is fusion.ParseInline on the document as sent, so every
// problem carries the sender's line numbers; a set that leaves trusted_ca
// out is not a problem here (the server's CA for the set is meant). The
// second runs once the CA is known (inside the publishing transaction,
// where it may be created): the CA is put in as trusted_ca.pem and the
// document parsed again to compile the sets.

// documentField names the whole document in problems that have no field.
const documentField = "(document)"

// candidate is a document after the first pass.
type candidate struct {
	raw  []byte
	root *yaml.Node // the mapping at the top, nil when data is not one
	cfg  *fusion.Config
	// omitted are the indexes of the sets without a trusted_ca key.
	omitted []int
	ids     []string // set id per index in fusion_sets
}

// parseCandidate is the first pass. wantSet, when not empty, is the set
// the document must hold, alone.
// maxSetsPerDocument bounds the sets one validate request may hold (a
// publish holds exactly one).
const maxSetsPerDocument = 256

func parseCandidate(raw []byte, wantSet string) (*candidate, []FieldError) {
	c := &candidate{raw: raw}
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) == nil && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		c.root = doc.Content[0]
	}
	if sets := mapValue(c.root, "fusion_sets"); sets != nil && sets.Kind == yaml.SequenceNode {
		for i, s := range sets.Content {
			id := ""
			if n := mapValue(s, "id"); n != nil && n.Kind == yaml.ScalarNode {
				id = n.Value
			}
			c.ids = append(c.ids, id)
			if s.Kind == yaml.MappingNode && mapValue(s, "trusted_ca") == nil {
				c.omitted = append(c.omitted, i)
			}
		}
	}
	// Checking a set costs CPU (and a stand-in CA per set): a document of
	// thousands of sets would tie up the server for seconds per request.
	if len(c.ids) > maxSetsPerDocument {
		return c, []FieldError{{Field: "fusion_sets", Detail: "at most " + strconv.Itoa(maxSetsPerDocument) + " fusion sets in one document"}}
	}
	cfg, err := fusion.ParseInline(raw, "document")
	var probs []FieldError
	if err != nil {
		for _, p := range loadProblems(err) {
			if !c.isOmittedCA(p.Field) {
				probs = append(probs, fieldError(p))
			}
		}
	}
	c.cfg = cfg
	if wantSet != "" && c.root != nil {
		probs = append(probs, c.holdsOnly(wantSet)...)
	}
	return c, probs
}

// isOmittedCA reports the "trusted_ca is required" problem of a set that
// left trusted_ca out on purpose.
func (c *candidate) isOmittedCA(field string) bool {
	for _, i := range c.omitted {
		if field == "fusion_sets["+strconv.Itoa(i)+"].trusted_ca" {
			return true
		}
	}
	return false
}

// holdsOnly is the publishing rule: one document, one set, the set of the
// URL.
func (c *candidate) holdsOnly(set string) []FieldError {
	switch {
	case len(c.ids) != 1:
		return []FieldError{{Field: "fusion_sets", Line: lineOf(c.root, "fusion_sets"),
			Detail: fmt.Sprintf("must hold exactly one fusion set, %q (the set in the URL); it holds %d", set, len(c.ids))}}
	case c.ids[0] != set:
		return []FieldError{{Field: "fusion_sets[0].id", Line: lineOf(c.root, "fusion_sets[0].id"),
			Detail: fmt.Sprintf("is %q, but the URL names %q", c.ids[0], set)}}
	}
	return nil
}

// compile is the second pass: caFor gives the CA of each set that left
// trusted_ca out. Without such a set, the first pass's result stands.
func (c *candidate) compile(caFor func(set string) (*x509.Certificate, error)) (*fusion.Config, []FieldError, error) {
	if len(c.omitted) == 0 {
		return c.cfg, nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(c.raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("re-reading the document: %w", err)
	}
	sets := mapValue(doc.Content[0], "fusion_sets")
	for _, i := range c.omitted {
		ca, err := caFor(c.ids[i])
		if err != nil {
			return nil, nil, err
		}
		pemNode := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})), Style: yaml.LiteralStyle}
		sets.Content[i].Content = append(sets.Content[i].Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "trusted_ca"},
			&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "pem"}, pemNode}})
	}
	injected, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, nil, fmt.Errorf("adding the CA to the document: %w", err)
	}
	cfg, err := fusion.ParseInline(injected, "document")
	if err == nil {
		return cfg, nil, nil
	}
	// Lines of the injected text are not the sender's: locate by field.
	var probs []FieldError
	for _, p := range loadProblems(err) {
		fe := fieldError(p)
		fe.Line = lineOf(c.root, p.Field)
		probs = append(probs, fe)
	}
	return nil, probs, nil
}

// loadProblems lists the problems of a ParseInline error.
func loadProblems(err error) []fusion.Problem {
	var le *fusion.LoadError
	if errors.As(err, &le) {
		return le.Problems
	}
	return []fusion.Problem{{Msg: err.Error()}}
}

func fieldError(p fusion.Problem) FieldError {
	f := p.Field
	if f == "" {
		f = documentField
	}
	return FieldError{Field: f, Line: p.Line, Detail: p.Msg}
}

// mapValue is the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf finds the line of a field path ("fusion_sets[0].revocation.urls[1]")
// in the document; the deepest node found when the path goes further than
// the document (a missing key is reported where its parent is), 0 when
// nothing of it is there.
func lineOf(root *yaml.Node, field string) int {
	n, line := root, 0
	for _, part := range strings.Split(field, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			n = mapValue(n, key)
		}
		for rest != "" && n != nil {
			idx, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			rest = strings.TrimPrefix(after, "[")
		}
		if n == nil {
			return line
		}
		line = n.Line
	}
	return line
}

// changedPaths lists the field paths that differ between two documents'
// YAML trees, sorted (prev nil: the first version, every top-level key).
func changedPaths(prev, next []byte) ([]string, error) {
	var a, b any = map[string]any{}, nil
	if prev != nil {
		if err := yaml.Unmarshal(prev, &a); err != nil {
			return nil, fmt.Errorf("reading the previous version: %w", err)
		}
	}
	if err := yaml.Unmarshal(next, &b); err != nil {
		return nil, fmt.Errorf("reading the new version: %w", err)
	}
	var out []string
	diffTree(a, b, "", &out)
	sort.Strings(out)
	return out, nil
}

func diffTree(a, b any, path string, out *[]string) {
	am, aok := asMap(a)
	bm, bok := asMap(b)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			diffTree(am[k], bm[k], p, out)
		}
		return
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok {
		for i := 0; i < max(len(al), len(bl)); i++ {
			p := path + "[" + strconv.Itoa(i) + "]"
			if i >= len(al) || i >= len(bl) {
				*out = append(*out, p)
				continue
			}
			diffTree(al[i], bl[i], p, out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		if path == "" {
			path = documentField
		}
		*out = append(*out, path)
	}
}

// asMap reads a YAML mapping with any scalar keys as string-keyed.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, val := range m {
			out[fmt.Sprint(k)] = val
		}
		return out, true
	}
	return nil, false
}
