package api

import (
	"bytes"
	"encoding/json"
)

// A few scanners over JSON that has already been decoded once (the
// request body, so it is valid): reading an event's members from it
// directly costs a fraction of decoding each object into a map again,
// which was a third of the ingest route's CPU. They still refuse, never
// panic on, anything that is not what they expect.

// jsonMember is one member of an object: its key (unescaped) and the
// bytes of its value.
type jsonMember struct {
	key string
	val json.RawMessage
}

// objectMembers returns the members of the JSON object raw, in order, or
// false when raw is not one object.
func objectMembers(raw []byte, out []jsonMember) ([]jsonMember, bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return out, skipSpace(raw, i+1) == len(raw)
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return nil, false
		}
		end := stringEnd(raw, i)
		if end < 0 {
			return nil, false
		}
		key, ok := jsonString(raw[i:end])
		if !ok {
			return nil, false
		}
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return nil, false
		}
		i = skipSpace(raw, i+1)
		vend := valueEnd(raw, i)
		if vend < 0 {
			return nil, false
		}
		out = append(out, jsonMember{key: key, val: raw[i:vend]})
		i = skipSpace(raw, vend)
		if i >= len(raw) {
			return nil, false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return out, skipSpace(raw, i+1) == len(raw)
		default:
			return nil, false
		}
	}
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && isJSONSpace(raw[i]) {
		i++
	}
	return i
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// stringEnd returns the index just after the string that starts at
// raw[i] (a quote), or -1.
func stringEnd(raw []byte, i int) int {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++ // the escaped byte (\" included) cannot end the string
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index just after the value that starts at raw[i],
// or -1.
func valueEnd(raw []byte, i int) int {
	if i >= len(raw) {
		return -1
	}
	switch raw[i] {
	case '"':
		return stringEnd(raw, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(raw); j++ {
			switch raw[j] {
			case '"':
				end := stringEnd(raw, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default: // a number, true, false or null
		j := i
		for j < len(raw) && !isJSONSpace(raw[j]) && raw[j] != ',' && raw[j] != '}' && raw[j] != ']' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// compactJSON is raw without insignificant whitespace. Gateways send
// compact JSON, so most events are returned as they are, without the copy
// json.Compact makes.
func compactJSON(raw []byte) (string, error) {
	inString := false
	for j := 0; j < len(raw); j++ {
		c := raw[j]
		switch {
		case inString && c == '\\':
			j++
		case c == '"':
			inString = !inString
		case !inString && isJSONSpace(c):
			var doc bytes.Buffer
			doc.Grow(len(raw))
			if err := json.Compact(&doc, raw); err != nil {
				return "", err
			}
			return doc.String(), nil
		}
	}
	return string(raw), nil
}
