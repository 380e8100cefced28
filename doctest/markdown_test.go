package doctest

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// The markers a README uses to tell this test how to treat a line of a
// shell block. They are plain shell comments, so a reader sees them too.
const (
	// markBackground, in the trailing comment of a line, marks a line that
	// starts a server: the test runs the line in the background, waits
	// until it listens on a TCP port, and stops it (SIGINT to its process
	// group) when the README's last block has run.
	markBackground = "runs until Ctrl-C"
	// markSkip, followed by ": why", marks a line the test does not run
	// (the test command itself, an Envoy binary the tests do not have, a
	// download). On the line before a fence, as an HTML comment
	// (<!-- not run by the README test: why -->), it marks the whole block.
	markSkip = "not run by the README test"
)

// shellLangs are the info strings of blocks that run. Other shell-like
// info strings are refused, so no command escapes the test by its label.
var (
	shellLangs   = map[string]bool{"sh": true, "bash": true}
	refusedLangs = map[string]bool{"shell": true, "console": true, "zsh": true, "shell-session": true, "sh-session": true, "bash-session": true}
)

// block is one fenced shell block of a README.
type block struct {
	file  string // README path, for messages
	line  int    // line of the opening fence
	lines []string
	// skip is the reason of a block-level skip marker, if any.
	skip string
}

func (b block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var fence = regexp.MustCompile("^( *)(```+|~~~+)\\s*([A-Za-z0-9_-]*)")

// shellBlocks returns the shell blocks of a markdown file, with the
// indentation of their fence (list items indent them) removed.
func shellBlocks(path, name string) ([]block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var (
		blocks   []block
		cur      *block
		closing  string
		indent   int
		prevText string // last non-blank line outside a block
		n        int
	)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur == nil && closing == "" {
			m := fence.FindStringSubmatch(line)
			if m == nil {
				if strings.TrimSpace(line) != "" {
					prevText = strings.TrimSpace(line)
				}
				continue
			}
			closing, indent = m[2], len(m[1])
			lang := strings.ToLower(m[3])
			if refusedLangs[lang] {
				return nil, fmt.Errorf("%s:%d: a ```%s block; label shell blocks ```sh (or ```bash) so that the README test runs them", name, n, lang)
			}
			if shellLangs[lang] {
				cur = &block{file: name, line: n}
				if r, ok := skipComment(prevText); ok {
					cur.skip = r
				}
			}
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(line, " "), closing) && strings.Trim(strings.TrimSpace(line), closing[:1]) == "" {
			if cur != nil {
				blocks = append(blocks, *cur)
			}
			cur, closing, prevText = nil, "", ""
			continue
		}
		if cur != nil {
			// Remove up to the fence's indentation.
			i := 0
			for i < indent && i < len(line) && line[i] == ' ' {
				i++
			}
			cur.lines = append(cur.lines, line[i:])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if closing != "" {
		return nil, fmt.Errorf("%s: a code block is not closed", name)
	}
	return blocks, nil
}

var skipCommentRE = regexp.MustCompile(`^<!--\s*` + markSkip + `\s*(?::\s*(.*?))?\s*-->$`)

// skipComment reads a block-level skip marker.
func skipComment(s string) (string, bool) {
	m := skipCommentRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// logicalLines joins backslash-continued lines.
func logicalLines(lines []string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		cur.WriteString(l)
		if strings.HasSuffix(l, `\`) {
			cur.WriteString("\n")
			continue
		}
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// lineKind tells how a logical line runs.
type lineKind int

const (
	runLine lineKind = iota
	skipLine
	backgroundLine
)

func classify(line string) (lineKind, error) {
	if strings.Contains(line, markSkip) {
		if !regexp.MustCompile(markSkip + `\s*:\s*\S`).MatchString(line) {
			return 0, fmt.Errorf("the marker %q must say why, after a colon: %s", markSkip, line)
		}
		return skipLine, nil
	}
	// A server started with '&' would outlive its block unseen (and keep
	// the block's output open); the marker makes the test manage it.
	code, _, _ := strings.Cut(line, " #")
	if strings.HasSuffix(strings.TrimSpace(code), "&") && !strings.HasSuffix(strings.TrimSpace(code), "&&") {
		return 0, fmt.Errorf("a line ends in '&'; start servers in the foreground with the marker %q instead, so the test can wait for them and stop them: %s", markBackground, line)
	}
	if _, comment, ok := strings.Cut(line, " #"); ok && strings.Contains(comment, markBackground) {
		return backgroundLine, nil
	}
	return runLine, nil
}
