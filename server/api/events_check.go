package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mccgate/mcc/schema"
)

// eventShape is what the ingest route checks each event against: the
// published JSON Schema of mcc.threat-event/v1 (schema/threat-event.v1.json),
// read from that file when the first batch arrives, so the server enforces
// the one document the gateways' events are tested with rather than a
// copy of it. Only the keywords that schema uses are understood; a schema
// using any other is refused (every ingest then answers 500 and the
// events tests fail), so a new constraint can never go unchecked.
type eventShape struct {
	props    map[string]*eventProp
	required []string
}

// eventProp is one property of an event object.
type eventProp struct {
	typ      string   // "string", "integer", "boolean" or "object"
	enum     []string // allowed values (const is an enum of one); nil = any
	pattern  *regexp.Regexp
	dateTime bool
	minimum  *int64
	object   *eventShape // an object with its own properties; nil = any object
}

var threatEventShape = sync.OnceValues(func() (*eventShape, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(schema.ThreatEventV1(), &root); err != nil {
		return nil, fmt.Errorf("threat event schema: %w", err)
	}
	p, err := compileEventProp(root, "#")
	if err != nil {
		return nil, fmt.Errorf("threat event schema: %w", err)
	}
	if p.object == nil {
		return nil, fmt.Errorf("threat event schema: the root is not an object with properties")
	}
	return p.object, nil
})

// schemaAnnotations are keywords that assert nothing.
var schemaAnnotations = map[string]bool{"$schema": true, "$id": true, "title": true, "description": true}

func compileEventProp(m map[string]json.RawMessage, at string) (*eventProp, error) {
	p := &eventProp{}
	var props map[string]map[string]json.RawMessage
	var required []string
	closed := false
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := m[k]
		var err error
		switch k {
		case "type":
			err = json.Unmarshal(raw, &p.typ)
			if err == nil && !slices.Contains([]string{"string", "integer", "boolean", "object"}, p.typ) {
				err = fmt.Errorf("type %q is not one the server checks", p.typ)
			}
		case "enum":
			err = json.Unmarshal(raw, &p.enum)
		case "const":
			var c string
			err = json.Unmarshal(raw, &c)
			p.enum = []string{c}
		case "pattern":
			var s string
			if err = json.Unmarshal(raw, &s); err == nil {
				p.pattern, err = regexp.Compile(s)
			}
		case "format":
			var f string
			if err = json.Unmarshal(raw, &f); err == nil && f != "date-time" {
				err = fmt.Errorf("format %q is not one the server checks", f)
			}
			p.dateTime = true
		case "minimum":
			var n int64
			err = json.Unmarshal(raw, &n)
			p.minimum = &n
		case "properties":
			err = json.Unmarshal(raw, &props)
		case "required":
			err = json.Unmarshal(raw, &required)
		case "additionalProperties":
			err = json.Unmarshal(raw, &closed)
			closed = err == nil && !closed
		default:
			if !schemaAnnotations[k] {
				err = fmt.Errorf("keyword %q is not one the server checks", k)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", at, k, err)
		}
	}
	if p.typ == "" && p.enum != nil {
		p.typ = "string"
	}
	if props == nil {
		if required != nil || closed {
			return nil, fmt.Errorf("%s: required or additionalProperties without properties", at)
		}
		return p, nil
	}
	// The server refuses keys the schema does not name; a schema that
	// allows them would need a rule for storing them first.
	if p.typ != "object" || !closed {
		return nil, fmt.Errorf("%s: properties of an object that is not closed (additionalProperties: false)", at)
	}
	p.object = &eventShape{props: make(map[string]*eventProp, len(props)), required: required}
	for name, sub := range props {
		sp, err := compileEventProp(sub, at+"/properties/"+name)
		if err != nil {
			return nil, err
		}
		p.object.props[name] = sp
	}
	for _, r := range required {
		if p.object.props[r] == nil {
			return nil, fmt.Errorf("%s: required %q is not a property", at, r)
		}
	}
	return p, nil
}

// eventProblems collects the located problems of a batch, up to a bound: a
// batch of 1000 broken events needs a few examples, not 1000 entries.
type eventProblems struct {
	list []FieldError
}

const maxEventProblems = 20

func (ps *eventProblems) add(field, detail string) {
	if len(ps.list) < maxEventProblems {
		ps.list = append(ps.list, FieldError{Field: field, Detail: detail})
	}
}

// check checks the object raw at path against s, and records every string
// value it holds in strs under its dotted name ("certificate.serial"),
// which is where the ingest route takes the indexed columns from.
func (s *eventShape) check(raw json.RawMessage, path, prefix string, strs map[string]string, ps *eventProblems) {
	var buf [32]jsonMember
	members, ok := objectMembers(raw, buf[:0])
	if !ok {
		ps.add(path, "must be an object")
		return
	}
	// Problems in name order, whatever order the event has its keys in.
	slices.SortFunc(members, func(a, b jsonMember) int { return strings.Compare(a.key, b.key) })
	for i, m := range members {
		switch {
		case i > 0 && members[i-1].key == m.key:
			// encoding/json would keep the last; the stored document
			// would keep both. One meaning only.
			ps.add(path+"."+m.key, "duplicate field")
		case s.props[m.key] == nil:
			ps.add(path+"."+m.key, "unknown field")
		}
	}
	for _, k := range s.required {
		if _, found := slices.BinarySearchFunc(members, k, func(m jsonMember, k string) int { return strings.Compare(m.key, k) }); !found {
			ps.add(path+"."+k, "required")
		}
	}
	for i, m := range members {
		if p := s.props[m.key]; p != nil && (i == 0 || members[i-1].key != m.key) {
			p.check(m.val, path+"."+m.key, prefix+m.key, strs, ps)
		}
	}
}

func (p *eventProp) check(raw json.RawMessage, path, name string, strs map[string]string, ps *eventProblems) {
	switch p.typ {
	case "string":
		v, ok := jsonString(raw)
		if !ok {
			ps.add(path, "must be a string")
			return
		}
		switch {
		case p.enum != nil && !slices.Contains(p.enum, v):
			ps.add(path, "must be one of "+quoteList(p.enum))
		case p.pattern != nil && !p.pattern.MatchString(v):
			ps.add(path, "must match "+p.pattern.String())
		case p.dateTime && !isDateTime(v):
			ps.add(path, "must be an RFC 3339 date-time")
		}
		strs[name] = v
	case "integer":
		// Plain integers only: 1.0 and 1e2 are numbers a Go gateway
		// never writes for a score.
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			ps.add(path, "must be an integer")
			return
		}
		if p.minimum != nil && n < *p.minimum {
			ps.add(path, "must be at least "+strconv.FormatInt(*p.minimum, 10))
		}
	case "boolean":
		if s := string(raw); s != "true" && s != "false" {
			ps.add(path, "must be true or false")
		}
	case "object":
		if p.object != nil {
			p.object.check(raw, path, name+".", strs, ps)
		} else if len(raw) == 0 || raw[0] != '{' {
			ps.add(path, "must be an object")
		}
	}
}

// jsonString reads a JSON string value. Most values hold no escape, and
// the body already decoded as JSON, so their text between the quotes is
// the string: decoding them is a third of an ingest's CPU, and skipped.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var v string
	err := json.Unmarshal(raw, &v)
	return v, err == nil
}

func isDateTime(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

func quoteList(vals []string) string {
	out := ""
	for i, v := range vals {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(v)
	}
	return out
}
