package safetext

import (
	"strings"
	"testing"
)

// TestCleanIsPrintable: whatever goes in, Clean's result is Printable and
// within the bound; Printable refuses what Clean replaces.
func TestCleanIsPrintable(t *testing.T) {
	for _, in := range []string{"ok", "a\tb", "a\x00", "x\u202ey", "z\u200b", "\xff\xfe", "l\u2028s", strings.Repeat("端", 100)} {
		out := Clean(in, 64)
		if !Printable(out) || len(out) > 64 {
			t.Errorf("Clean(%q) = %q: printable %v, %d bytes", in, out, Printable(out), len(out))
		}
		if (out == in) != Printable(in) && len(in) <= 64 {
			t.Errorf("%q: Clean changed it %v, Printable %v", in, out != in, Printable(in))
		}
	}
}
