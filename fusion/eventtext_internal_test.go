package fusion

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestEventText: what a client puts in a device header or a request id
// reaches events as text mcc server stores (valid UTF-8, printable, at
// most the bound), so that one client cannot make the server refuse a
// webhook batch holding other clients' events; a clean value is kept as
// it is.
func TestEventText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"device-1234", "device-1234"},
		{"Gerät ü 端末", "Gerät ü 端末"},
		{"a\tb", "a\uFFFDb"},
		{"a\x00b\x1b[31m", "a\uFFFDb\uFFFD[31m"},
		{"abc\u202edcb", "abc\uFFFDdcb"},
		{"dev\u200bice", "dev\uFFFDice"},
		{"bad \xff\xfe utf-8", "bad \uFFFD\uFFFD utf-8"},
	} {
		if got := eventText(tc.in, maxDeviceValue); got != tc.want {
			t.Errorf("eventText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Over the bound, in every shape: cut at a rune boundary, never over.
	for _, in := range []string{strings.Repeat("a", 300), strings.Repeat("é", 200), strings.Repeat("\xff", 300),
		strings.Repeat("a", 255) + "端末", strings.Repeat("\t", 300)} {
		got := eventText(in, maxDeviceValue)
		if len(got) > maxDeviceValue || len(got) < maxDeviceValue-3 || !utf8.ValidString(got) ||
			strings.ContainsFunc(got, func(r rune) bool { return !unicode.IsPrint(r) }) {
			t.Errorf("eventText(%.20q...) = %d bytes, valid %v: %.40q", in, len(got), utf8.ValidString(got), got)
		}
	}
	clean := "device-" + strings.Repeat("x", 100)
	if n := testing.AllocsPerRun(100, func() { _ = eventText(clean, maxDeviceValue) }); n != 0 {
		t.Errorf("a clean value costs %v allocations, want 0", n)
	}
}
