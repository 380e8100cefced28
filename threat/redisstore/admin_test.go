package redisstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat"
)

// TestBanAdmin lists and lifts bans in a real Redis: the keys Add wrote are
// found by SCAN, an address names the /64 it lies in, lifting clears the
// score with the ban, and a second gateway sees the lift at once.
func TestBanAdmin(t *testing.T) {
	srv := redistest.New(t)
	a := newStore(t, srv.URL(), testOptions())
	b := newStore(t, srv.URL(), testOptions())
	ctx := context.Background()
	p := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: 10 * time.Minute}
	long := strings.Repeat("d", MaxKeyValue+1)
	mustAdd := func(ns string, sub threat.Subject, delta int) {
		t.Helper()
		if _, err := a.Add(ctx, ns, sub, delta, p); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd("bank-prod", threat.Subject{IP: "2001:db8:1:2::/64", DeviceID: long, CertSHA: "ab12"}, 12)
	mustAdd("bank-prod", threat.Subject{IP: "192.0.2.9"}, 5) // scored, not banned
	mustAdd("bank-beta", threat.Subject{IP: "192.0.2.7"}, 10)
	// A key that only looks like ours is skipped, not misread.
	if _, err := srv.Do("SET", "mcc:{bank-prod}:ban:nonsense", "1", "PX", "60000"); err != nil {
		t.Fatal(err)
	}

	bans, err := b.Bans(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		set   string
		kind  threat.SubjectKind
		value string
	}
	var got []key
	for _, ban := range bans {
		got = append(got, key{ban.Set, ban.Kind, ban.Value})
		if d := time.Until(ban.Until); d <= 9*time.Minute || d > 10*time.Minute {
			t.Errorf("%+v: until in %v, want about 10m", ban, d)
		}
	}
	want := []key{
		{"bank-beta", threat.SubjectAddress, "192.0.2.7"},
		{"bank-prod", threat.SubjectAddress, "2001:db8:1:2::/64"},
		{"bank-prod", threat.SubjectDevice, keyValue(long)},
		{"bank-prod", threat.SubjectCertificate, "ab12"},
	}
	if len(got) != len(want) {
		t.Fatalf("bans %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ban %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if bans[1].Score != 12 {
		t.Errorf("score %d, want 12", bans[1].Score)
	}
	if only, err := b.Bans(ctx, "bank-beta"); err != nil || len(only) != 1 {
		t.Fatalf("bans of bank-beta: %+v %v", only, err)
	}

	lifted, err := b.Lift(ctx, "bank-prod", threat.SubjectAddress, "2001:db8:1:2::abcd")
	if err != nil || len(lifted) != 1 || lifted[0].Value != "2001:db8:1:2::/64" {
		t.Fatalf("Lift = %+v, %v", lifted, err)
	}
	if until, err := a.Banned(ctx, "bank-prod", threat.Subject{IP: "2001:db8:1:2::/64"}); err != nil || !until.IsZero() {
		t.Fatalf("the other gateway still sees the ban: %v %v", until, err)
	}
	if res, err := a.Add(ctx, "bank-prod", threat.Subject{IP: "2001:db8:1:2::/64"}, 5, p); err != nil || res.Total != 5 || !res.BannedUntil.IsZero() {
		t.Fatalf("score not cleared by the lift: %+v %v", res, err)
	}
	// A long device id is lifted by its value or by the digest listed.
	if lifted, err := b.Lift(ctx, "bank-prod", threat.SubjectDevice, long); err != nil || len(lifted) != 1 {
		t.Fatalf("device lift %+v %v", lifted, err)
	}
	mustAdd("bank-prod", threat.Subject{DeviceID: long}, 10)
	if lifted, err := b.Lift(ctx, "bank-prod", threat.SubjectDevice, keyValue(long)); err != nil || len(lifted) != 1 {
		t.Fatalf("device lift by digest %+v %v", lifted, err)
	}
	// Nothing banned: nothing lifted, no error; the other set is untouched.
	if lifted, err := b.Lift(ctx, "bank-prod", threat.SubjectAddress, "192.0.2.7"); err != nil || len(lifted) != 0 {
		t.Fatalf("lift in the wrong set: %+v %v", lifted, err)
	}
	if until, _ := a.Banned(ctx, "bank-beta", threat.Subject{IP: "192.0.2.7"}); until.IsZero() {
		t.Fatal("bank-beta's ban was lifted")
	}
	if _, err := b.Lift(ctx, "", threat.SubjectAddress, "192.0.2.7"); err == nil {
		t.Fatal("lift without a set accepted")
	}
}

// TestBanAdminDown: an operator's call to a Redis that is down fails with a
// clear error instead of hanging or answering "no bans".
func TestBanAdminDown(t *testing.T) {
	srv := redistest.New(t)
	s := newStore(t, srv.URL(), testOptions())
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if bans, err := s.Bans(ctx, ""); err == nil || !strings.Contains(err.Error(), "listing bans") {
		t.Fatalf("Bans with Redis down = %+v, %v", bans, err)
	}
}
