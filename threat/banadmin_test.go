package threat_test

import (
	"context"
	"testing"
	"time"

	"github.com/mccgate/mcc/threat"
)

// TestAddressKey: IPv6 clients are scored by prefix (default /64), IPv4 by
// address (default /32); the key of a full-length prefix is the bare
// address, as stores held it before prefixes existed.
func TestAddressKey(t *testing.T) {
	tests := []struct {
		raw    string
		v4, v6 int
		want   string
	}{
		{"192.0.2.7", 0, 0, "192.0.2.7"},
		{"192.0.2.7", 32, 64, "192.0.2.7"},
		{"192.0.2.7", 24, 64, "192.0.2.0/24"},
		{"::ffff:192.0.2.7", 32, 64, "192.0.2.7"},
		{"192.0.2.7:443", 32, 64, "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", 0, 0, "2001:db8:1:2::/64"},
		{"2001:DB8:1:2::9", 32, 64, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:443", 32, 64, "2001:db8:1:2::/64"},
		{"fe80::1%eth0", 32, 64, "fe80::/64"},
		{"2001:db8:1:2::9", 32, 48, "2001:db8:1::/48"},
		{"2001:db8::9", 32, 128, "2001:db8::9"},
		{"2001:0db8::9", 32, 128, "2001:db8::9"},
		{"", 32, 64, ""},
		{"not an address", 32, 64, "not an address"},
	}
	for _, tc := range tests {
		if got := threat.AddressKey(tc.raw, tc.v4, tc.v6); got != tc.want {
			t.Errorf("AddressKey(%q, %d, %d) = %q, want %q", tc.raw, tc.v4, tc.v6, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { threat.AddressKey("198.51.100.23", 32, 64) }); n != 0 {
		t.Errorf("AddressKey of an IPv4 address: %v allocs", n)
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		kind          threat.SubjectKind
		stored, query string
		want          bool
	}{
		{threat.SubjectAddress, "2001:db8:1:2::/64", "2001:db8:1:2::77", true},
		{threat.SubjectAddress, "2001:db8:1:2::/64", "2001:db8:1:3::77", false},
		{threat.SubjectAddress, "2001:db8:1:2::/64", "2001:db8:1::/48", true},
		{threat.SubjectAddress, "192.0.2.7", "192.0.2.7", true},
		{threat.SubjectAddress, "192.0.2.7", "::ffff:192.0.2.7", true},
		{threat.SubjectAddress, "192.0.2.7", "192.0.2.8", false},
		{threat.SubjectAddress, "192.0.2.0/24", "192.0.2.8", true},
		{threat.SubjectDevice, "dev-1", "dev-1", true},
		{threat.SubjectDevice, "192.0.2.0/24", "192.0.2.8", false},
	}
	for _, tc := range tests {
		if got := threat.SubjectMatches(tc.kind, tc.stored, tc.query); got != tc.want {
			t.Errorf("SubjectMatches(%s, %q, %q) = %v", tc.kind, tc.stored, tc.query, got)
		}
	}
}

// TestMemoryStoreBanAdmin: list and lift bans (mcc ban, and later the API).
func TestMemoryStoreBanAdmin(t *testing.T) {
	clk := newClock()
	s := threat.NewMemoryStore(clk.Now)
	ctx := context.Background()
	p := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: 10 * time.Minute}
	mustAdd(t, s, "a", threat.Subject{IP: "2001:db8:1:2::/64", DeviceID: "dev-1", CertSHA: "ab12"}, 10, p)
	mustAdd(t, s, "a", threat.Subject{IP: "192.0.2.9"}, 5, p) // scored, not banned
	mustAdd(t, s, "b", threat.Subject{IP: "192.0.2.7"}, 10, p)

	bans, err := s.Bans(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []threat.Ban{
		{Set: "a", Kind: threat.SubjectAddress, Value: "2001:db8:1:2::/64"},
		{Set: "a", Kind: threat.SubjectDevice, Value: "dev-1"},
		{Set: "a", Kind: threat.SubjectCertificate, Value: "ab12"},
		{Set: "b", Kind: threat.SubjectAddress, Value: "192.0.2.7"},
	}
	until := clk.Now().Add(10 * time.Minute)
	if len(bans) != len(want) {
		t.Fatalf("bans %+v", bans)
	}
	for i, b := range bans {
		if b.Set != want[i].Set || b.Kind != want[i].Kind || b.Value != want[i].Value || !b.Until.Equal(until) || b.Score != 10 {
			t.Errorf("ban %d = %+v, want %+v until %v score 10", i, b, want[i], until)
		}
	}
	if only, _ := s.Bans(ctx, "b"); len(only) != 1 || only[0].Value != "192.0.2.7" {
		t.Errorf("bans of b: %+v", only)
	}

	// An address inside the banned /64 lifts it; the score goes too, so
	// the next failure starts from zero.
	lifted, err := s.Lift(ctx, "a", threat.SubjectAddress, "2001:db8:1:2::1234")
	if err != nil || len(lifted) != 1 || lifted[0].Value != "2001:db8:1:2::/64" {
		t.Fatalf("Lift = %+v, %v", lifted, err)
	}
	if until, _ := s.Banned(ctx, "a", threat.Subject{IP: "2001:db8:1:2::/64"}); !until.IsZero() {
		t.Fatalf("still banned until %v", until)
	}
	if r := mustAdd(t, s, "a", threat.Subject{IP: "2001:db8:1:2::/64"}, 5, p); r.Total != 5 || !r.BannedUntil.IsZero() {
		t.Fatalf("after lift: %+v", r)
	}
	// The device and certificate bans stand until lifted by name.
	if until, _ := s.Banned(ctx, "a", threat.Subject{DeviceID: "dev-1"}); until.IsZero() {
		t.Fatal("device ban lifted with the address")
	}
	if lifted, _ := s.Lift(ctx, "a", threat.SubjectDevice, "dev-"); len(lifted) != 0 {
		t.Fatalf("device prefix lifted %+v", lifted)
	}
	if lifted, _ := s.Lift(ctx, "a", threat.SubjectCertificate, "ab12"); len(lifted) != 1 {
		t.Fatalf("certificate lift %+v", lifted)
	}
	// Another set's ban is untouched; lifting nothing is no error.
	if lifted, err := s.Lift(ctx, "a", threat.SubjectAddress, "192.0.2.7"); err != nil || len(lifted) != 0 {
		t.Fatalf("lift in the wrong set: %+v %v", lifted, err)
	}
	if until, _ := s.Banned(ctx, "b", threat.Subject{IP: "192.0.2.7"}); until.IsZero() {
		t.Fatal("set b's ban lifted")
	}
	// Expired bans are not listed.
	clk.Add(11 * time.Minute)
	if bans, _ := s.Bans(ctx, ""); len(bans) != 0 {
		t.Fatalf("expired bans listed: %+v", bans)
	}
}
