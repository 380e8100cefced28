package fusion

import (
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a fusion set file, located by file, line
// and field path (for example "fusion_sets[0].trusted_ca.file").
type Problem struct {
	File  string
	Line  int
	Field string
	Msg   string
}

// Error formats the problem as "FILE:LINE: FIELD: MSG", leaving out the
// parts that are unknown (an inline Caddyfile set has no line).
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// LoadError carries every problem found while loading, not just the first.
type LoadError struct {
	Problems []Problem
}

// Error joins the problems, one per line.
func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems by line, then field, so output is stable
// (map-valued fields such as scores decode in random order).
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Field < ps[j].Field
	})
}
