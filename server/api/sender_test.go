package api

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestSenderAgent: what a sender puts in User-Agent reaches the gateways
// view bounded, valid UTF-8 and without control characters.
func TestSenderAgent(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mcc-webhook/1 mcc/v0.5.0", "mcc-webhook/1 mcc/v0.5.0"},
		{"a\x00b\x1bc\x7fd\te", "a\uFFFDb\uFFFDc\uFFFDd\uFFFDe"},
		{"bad \xff\xfe utf-8", "bad \uFFFD\uFFFD utf-8"},
		{"", ""},
	} {
		if got := senderAgent(tc.in); got != tc.want {
			t.Errorf("senderAgent(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := senderAgent(strings.Repeat("é", 300))
	if len(long) > maxAgentBytes || !utf8.ValidString(long) || len(long) < maxAgentBytes-1 {
		t.Errorf("a long agent: %d bytes, valid %v", len(long), utf8.ValidString(long))
	}
}
