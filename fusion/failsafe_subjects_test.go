package fusion_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// lowThreshold is a fail-safe set where one scored failure of almost any
// reason bans: if any of them scored the certificate, the test would see it.
func lowThreshold(mode string, edit func(*fusion.FailSafe)) func(*fusion.SetConfig) {
	return func(s *fusion.SetConfig) {
		s.Mode = mode
		s.ThreatEvents = true
		s.FailSafe = &fusion.FailSafe{Threshold: 10, Window: fusion.Duration(time.Minute), Duration: fusion.Duration(10 * time.Minute)}
		if edit != nil {
			edit(s.FailSafe)
		}
	}
}

// from is req sent by another client: its own address and device id.
func from(req *fusion.Request, ip, device string) *fusion.Request {
	req.ClientIP = ip
	req.Header.Set(fusiontest.HeaderDeviceID, device)
	return req
}

// certBans returns the certificate bans the store holds for the set.
func certBans(t *testing.T, st *threat.MemoryStore, set string) []threat.Ban {
	t.Helper()
	bans, err := st.Bans(context.Background(), set)
	if err != nil {
		t.Fatal(err)
	}
	var out []threat.Ban
	for _, b := range bans {
		if b.Kind == threat.SubjectCertificate {
			out = append(out, b)
		}
	}
	return out
}

// TestGenuineCertificateNeverBanned is issue 9 point 3: whoever holds the
// app bundle holds the build's genuine certificate, and failures the request
// causes (a chain over the caps, a broken or missing extra certificate, a
// spoofed header, a failed handshake) scored that certificate, so three bad
// requests from three addresses banned it for every genuine user, on every
// gateway sharing the store. Now they score the address and device id of
// whoever sent them, never a certificate that verifies against the set's CA.
func TestGenuineCertificateNeverBanned(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	clock := newFakeClock(c.Now)
	st := threat.NewMemoryStore(clock.Now)
	e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", lowThreshold("defense", nil)), fusion.Options{Clock: clock.Now, Store: st})
	valid := c.Case(t, "valid")
	viaInter := c.Case(t, "valid_via_intermediate")
	ctx := context.Background()

	attacks := []struct {
		name string
		req  func() *fusion.Request
		want threat.Reason
	}{
		{"chain over the depth cap", func() *fusion.Request { return request(c.Case(t, "chain_too_deep"), "") }, threat.ReasonCertMalformed},
		{"broken extra certificate", func() *fusion.Request { return request(c.Case(t, "malformed_intermediate"), "") }, threat.ReasonCertMalformed},
		{"chain over the size cap", func() *fusion.Request {
			r := request(valid, "")
			r.PeerCertificates = [][]byte{valid.Chain[0], make([]byte, fusion.MaxCertBytes+1)}
			return r
		}, threat.ReasonCertMalformed},
		{"intermediate left out", func() *fusion.Request {
			r := request(viaInter, "")
			r.PeerCertificates = viaInter.Chain[:1]
			return r
		}, threat.ReasonCertUntrusted},
		{"spoofed certificate header", func() *fusion.Request {
			r := request(valid, "")
			r.Reason, r.ReasonData = threat.ReasonSpoofedCertHeader, map[string]any{"error": "forwarded certificate header from an untrusted peer"}
			return r
		}, threat.ReasonSpoofedCertHeader},
		{"failed handshake", func() *fusion.Request {
			r := request(valid, "")
			r.Reason, r.ReasonData = threat.ReasonHandshakeFailed, map[string]any{"error": "tls: bad record MAC"}
			return r
		}, threat.ReasonHandshakeFailed},
		{"handshake with a broken chain", func() *fusion.Request {
			r := request(c.Case(t, "malformed_intermediate"), "")
			r.Handshake = true
			return r
		}, threat.ReasonHandshakeFailed},
	}
	for i, a := range attacks {
		// Three bad requests from three addresses and devices, like the
		// reproduction in the issue.
		for j := range 3 {
			ip := fmt.Sprintf("198.51.100.%d", 10*i+j+1)
			d := e.Evaluate(ctx, c.SetID, from(a.req(), ip, fmt.Sprintf("bot-%d-%d", i, j)))
			if d.Reason != a.want || d.Action != fusion.Block {
				t.Fatalf("%s from %s: %s %s, want a block with %s", a.name, ip, d.Action, d.Reason, a.want)
			}
		}
		if bans := certBans(t, st, c.SetID); len(bans) > 0 {
			t.Fatalf("%s: the genuine certificate was banned: %+v", a.name, bans)
		}
		// A genuine user of the build, on a clean address, still passes.
		for _, tc := range []fusiontest.Case{valid, viaInter} {
			d := e.Evaluate(ctx, c.SetID, from(request(tc, ""), "203.0.113.77", "genuine-user"))
			if d.Action != fusion.Allow || d.Reason != threat.ReasonNone {
				t.Fatalf("after %q: genuine request with %s: %s %s", a.name, tc.Name, d.Action, d.Reason)
			}
		}
		// The attacker's own address is what got banned.
		if d := e.Evaluate(ctx, c.SetID, from(request(valid, ""), fmt.Sprintf("198.51.100.%d", 10*i+1), "another-device")); d.Reason != threat.ReasonFailSafeActive {
			t.Fatalf("%s: the attacking address is not banned: %s", a.name, d.Reason)
		}
	}
}

// TestUntrustedCertificateScoredByHash: a certificate that provably does not
// come from the set's CA (it names the CA but another key signed it, it is
// self-signed, or it does not parse) is still scored by its hash, so a bot
// rotating addresses and device ids with it is banned.
func TestUntrustedCertificateScoredByHash(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	for _, name := range []string{"untrusted_ca", "garbage_der"} {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock(c.Now)
			st := threat.NewMemoryStore(clock.Now)
			e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", lowThreshold("defense", func(fs *fusion.FailSafe) { fs.Threshold = 90 })), fusion.Options{Clock: clock.Now, Store: st})
			bad := c.Case(t, name)
			ctx := context.Background()
			// 30 or 40 per request: the third one bans the certificate, and
			// no address or device has more than one.
			for j := range 3 {
				e.Evaluate(ctx, c.SetID, from(request(bad, ""), fmt.Sprintf("198.51.100.%d", j+1), fmt.Sprintf("bot-%d", j)))
			}
			if bans := certBans(t, st, c.SetID); len(bans) != 1 {
				t.Fatalf("certificate bans %+v, want the forged certificate's", bans)
			}
			d := e.Evaluate(ctx, c.SetID, from(request(bad, ""), "203.0.113.9", "bot-new"))
			if d.Reason != threat.ReasonFailSafeActive {
				t.Fatalf("forged certificate from a fresh address: %s, want FAIL_SAFE_ACTIVE", d.Reason)
			}
		})
	}
}

// TestReasonSubjectsTable: every reason has an entry, and only reasons about
// the certificate's own material may score it.
func TestReasonSubjectsTable(t *testing.T) {
	certReasons := map[threat.Reason]bool{threat.ReasonCertUntrusted: true, threat.ReasonCertMalformed: true, threat.ReasonWeakCrypto: true, threat.ReasonWrongKeyUsage: true}
	for _, r := range threat.AllReasons {
		subj := r.Subjects()
		if got := subj.Has(threat.SubjectCertificate); got != certReasons[r] {
			t.Errorf("%s scores the certificate: %v", r, got)
		}
		if threat.DefaultScores[r] > 0 && !subj.Has(threat.SubjectAddress) {
			t.Errorf("%s scores %q, want the address at least", r, subj)
		}
	}
}

// TestIPv6PrefixBan is issue 9 point 10: a client rotating through its /64
// is one subject; another /64 is another. IPv4 stays per address unless
// ipv4_prefix says otherwise.
func TestIPv6PrefixBan(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	valid, noCert := c.Case(t, "valid"), c.Case(t, "no_cert")
	ctx := context.Background()
	type probe struct {
		ip     string
		banned bool
	}
	tests := []struct {
		name   string
		edit   func(*fusion.FailSafe)
		attack []string // each scores NO_CLIENT_CERT (10); threshold 20
		probes []probe
	}{
		{"ipv6 default /64", nil,
			[]string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fff0"},
			[]probe{{"2001:db8:1:2::abcd", true}, {"2001:DB8:1:2:0:0:0:9", true}, {"fe80::1", false}, {"2001:db8:1:3::1", false}, {"2001:db8:1:2::1", true}}},
		{"ipv6 /128", func(fs *fusion.FailSafe) { fs.IPv6Prefix = 128 },
			[]string{"2001:db8:1:2::1", "2001:db8:1:2::2"},
			[]probe{{"2001:db8:1:2::3", false}}},
		{"ipv6 /48", func(fs *fusion.FailSafe) { fs.IPv6Prefix = 48 },
			[]string{"2001:db8:1:2::1", "2001:db8:1:7::2"},
			[]probe{{"2001:db8:1:ffff::1", true}, {"2001:db8:2::1", false}}},
		{"ipv4 default /32", nil,
			[]string{"192.0.2.1", "192.0.2.1"},
			[]probe{{"192.0.2.1", true}, {"::ffff:192.0.2.1", true}, {"192.0.2.1:4711", true}, {"192.0.2.2", false}}},
		{"ipv4 /24", func(fs *fusion.FailSafe) { fs.IPv4Prefix = 24 },
			[]string{"192.0.2.1", "192.0.2.200"},
			[]probe{{"192.0.2.77", true}, {"192.0.3.1", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(c.Now)
			e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", lowThreshold("defense", func(fs *fusion.FailSafe) {
				fs.Threshold = 20
				if tc.edit != nil {
					tc.edit(fs)
				}
			})), fusion.Options{Clock: clock.Now})
			for i, ip := range tc.attack {
				// A fresh device id each time: only the address links them.
				if d := e.Evaluate(ctx, c.SetID, from(request(noCert, ""), ip, fmt.Sprintf("rot-%d", i))); d.Reason != threat.ReasonNoClientCert {
					t.Fatalf("attack from %s: %s", ip, d.Reason)
				}
			}
			for i, p := range tc.probes {
				d := e.Evaluate(ctx, c.SetID, from(request(valid, ""), p.ip, fmt.Sprintf("probe-%d", i)))
				if got := d.Reason == threat.ReasonFailSafeActive; got != p.banned {
					t.Errorf("valid request from %s: %s %s, banned %v, want %v", p.ip, d.Action, d.Reason, got, p.banned)
				}
			}
		})
	}
}

// TestFailSafeSubjectsChoice is issue 10 point 9: a set chooses what it
// scores. Behind a carrier NAT, a set scoring only devices (and forged
// certificates) does not lock out the genuine users sharing the bot's
// address; the default (all three) does.
func TestFailSafeSubjectsChoice(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	valid, untrusted := c.Case(t, "valid"), c.Case(t, "untrusted_ca")
	ctx := context.Background()
	const nat = "100.64.0.1" // RFC 6598 shared address space
	tests := []struct {
		name                                string
		subjects                            []string
		natBanned, deviceBanned, certBanned bool
	}{
		{"default", nil, true, true, true},
		{"device and certificate", []string{"device", "certificate"}, false, true, true},
		{"address only", []string{"address"}, true, false, false},
		{"certificate only", []string{"certificate"}, false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(c.Now)
			e := loadEngine(t, c.WriteSetFile(t, "fs.yaml", lowThreshold("defense", func(fs *fusion.FailSafe) {
				fs.Threshold = 60
				fs.Subjects = tc.subjects
			})), fusion.Options{Clock: clock.Now})
			// The bot: two forged requests (30 each) from the NAT address.
			for range 2 {
				e.Evaluate(ctx, c.SetID, from(request(untrusted, ""), nat, "bot-device"))
			}
			check := func(what string, req *fusion.Request, want bool) {
				t.Helper()
				d := e.Evaluate(ctx, c.SetID, req)
				if got := d.Reason == threat.ReasonFailSafeActive; got != want {
					t.Errorf("%s: %s, banned %v, want %v", what, d.Reason, got, want)
				}
			}
			check("genuine user behind the same NAT", from(request(valid, ""), nat, "user-device"), tc.natBanned)
			check("the bot's device elsewhere", from(request(valid, ""), "203.0.113.1", "bot-device"), tc.deviceBanned)
			check("the forged certificate elsewhere", from(request(untrusted, ""), "203.0.113.2", "other"), tc.certBanned)
		})
	}
}

// TestFailSafeSubjectsValidation: the new keys are checked like every other
// key, FILE:LINE: FIELD: message.
func TestFailSafeSubjectsValidation(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	fs := func(lines string) string { return validSet + "    fail_safe:\n      threshold: 100\n" + lines }
	tests := []struct {
		name string
		yaml string
		want []wantProblem
	}{
		{"unknown subject", fs("      subjects: [address, ip]\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.subjects[1]", `unknown subject "ip": want one of address, device, certificate`}}},
		{"twice", fs("      subjects:\n        - address\n        - address\n"),
			[]wantProblem{{12, "fusion_sets[0].fail_safe.subjects[1]", "address listed twice"}}},
		{"empty", fs("      subjects: []\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.subjects", "empty: list at least one"}}},
		{"device without header", fs("      subjects: [device]\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.subjects[0]", "device needs device_headers.deviceID"}}},
		{"ipv4 prefix too short", fs("      ipv4_prefix: 8\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.ipv4_prefix", "must be a prefix length from 16 to 32, got 8"}}},
		{"ipv4 prefix zero", fs("      ipv4_prefix: 0\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.ipv4_prefix", "from 16 to 32, got 0"}}},
		{"ipv6 prefix too long", fs("      ipv6_prefix: 129\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.ipv6_prefix", "from 32 to 128, got 129"}}},
		{"ipv6 prefix as string", fs("      ipv6_prefix: \"64\"\n"),
			[]wantProblem{{10, "fusion_sets[0].fail_safe.ipv6_prefix", "want an integer"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkProblems(t, c, tc.yaml, tc.want) })
	}
	cfg, err := loadString(t, c.Dir, fs("      subjects: [certificate, address]\n      ipv4_prefix: 24\n      ipv6_prefix: 56\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Sets["bank-prod"].FailSafe
	if p.ScoredSubjects() != threat.SubjectsOf(threat.SubjectAddress, threat.SubjectCertificate) {
		t.Errorf("subjects %q", p.ScoredSubjects())
	}
	if v4, v6 := p.Prefixes(); v4 != 24 || v6 != 56 {
		t.Errorf("prefixes %d %d", v4, v6)
	}
}

// TestCachedIPv6Allocs: the cached good path allocates nothing more for an
// IPv6 client than for an IPv4 one (the /64 key is cached).
func TestCachedIPv6Allocs(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	ctx := context.Background()
	allocs := func(ip string) float64 {
		req := request(c.Case(t, "valid"), ip)
		if d := e.Evaluate(ctx, c.SetID, req); d.Action != fusion.Allow {
			t.Fatalf("%+v", d)
		}
		return testing.AllocsPerRun(200, func() { e.Evaluate(ctx, c.SetID, req) })
	}
	v4, v6 := allocs("192.0.2.1"), allocs("2001:db8:1:2::1")
	if v6 > v4 {
		t.Errorf("cached good path: %v allocs for IPv6, %v for IPv4", v6, v4)
	}
}
