// Package safetext is the one rule for text a client controls that mcc
// stores, indexes or shows: valid UTF-8 of printable characters
// (unicode.IsPrint: no controls, no format characters such as bidi
// overrides or zero-width joiners, no line or paragraph separators).
// Gateways clean such text before it enters an event (Clean). mcc server
// refuses what does not follow it where the text names something (a
// gateway node, an enrollment's device values: Printable) and control
// characters in every indexed event field, so what a gateway sends always
// passes.
package safetext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable reports whether s is valid UTF-8 of printable characters only.
func Printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// Clean makes s printable and at most max bytes: each rune that is not
// printable, and each invalid byte, becomes U+FFFD, and the result is cut
// at a rune boundary. A clean value is returned as it is, without
// allocating.
func Clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return utf8.RuneError
		}
		return r
	}, s)
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
