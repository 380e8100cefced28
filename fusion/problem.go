package fusion

import (
	"sort"

	"github.com/mccgate/mcc/internal/cfgerr"
)

// Problem is one thing wrong with a fusion set file, located by file, line
// and field path (for example "fusion_sets[0].trusted_ca.file"). It prints as
// "FILE:LINE: FIELD: MSG".
type Problem = cfgerr.Problem

// LoadError carries every problem found while loading, not just the first.
type LoadError = cfgerr.List

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
