// Package cfgerr is how mcc reports problems in a configuration file: each
// one located by file, line and field path, all of them at once. The fusion
// set loader and the gateway section decoder share it so that `mcc validate`
// prints both the same way.
package cfgerr

import (
	"strconv"
	"strings"
)

// Problem is one thing wrong with a file, located by file, line and field
// path (for example "fusion_sets[0].trusted_ca.file").
type Problem struct {
	File  string
	Line  int
	Field string
	Msg   string
}

// Error formats the problem as "FILE:LINE: FIELD: MSG", leaving out the
// parts that are unknown (an inline Caddyfile set has no file).
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

// List carries every problem found, not just the first.
type List struct {
	Problems []Problem
}

// Error joins the problems, one per line.
func (e *List) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}
