package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/redisstore"
)

// TestBansView: with --ban-store the console lists the live fail-safe
// bans that gateways wrote to their shared Redis (a real redis-server), a
// read-only session sees no Lift button and is refused a lift, and an
// admin's lift ends the ban in the store the gateways read, with an audit
// entry; names in bans are shown as text.
func TestBansView(t *testing.T) {
	rs := redistest.New(t)
	e := startEnv(t, "", func(c *server.Config) { c.BanStore = rs.URL() })
	ctx := context.Background()
	// A gateway of the fleet, on the same store.
	gw, err := redisstore.New(ctx, rs.URL(), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	policy := threat.Policy{Threshold: 10, Window: time.Minute, BanFor: 10 * time.Minute}
	for _, sub := range []threat.Subject{{IP: "198.51.100.7"}, {DeviceID: "<b>dev-1</b>"}} {
		if res, err := gw.Add(ctx, "shop-prod", sub, 50, policy); err != nil || res.BannedUntil.IsZero() {
			t.Fatalf("banning %+v: %+v %v", sub, res, err)
		}
	}

	reader := e.browser(t)
	reader.signIn(e.read)
	resp, body := reader.get("/console/bans")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bans: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `data-ban="address:198.51.100.7"`) || !strings.Contains(body, `data-ban="device:&lt;b&gt;dev-1&lt;/b&gt;"`) {
		t.Fatalf("the bans view does not list both bans (escaped):\n%s", body)
	}
	if strings.Contains(body, "<b>dev-1") {
		t.Error("a device id is rendered as markup")
	}
	if !strings.Contains(body, `href="/console/events?clientIP=198.51.100.7&amp;fusionSet=shop-prod&amp;range=24h"`) {
		t.Error("the banned address does not link to its events")
	}
	if strings.Contains(body, "/console/bans/lift") {
		t.Error("a read-only session is offered a Lift button")
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if csrf == nil {
		t.Fatal("no CSRF token on the page")
	}
	lift := url.Values{"csrf": {csrf[1]}, "fusionSet": {"shop-prod"}, "kind": {"address"}, "value": {"198.51.100.7"}}
	if resp, _ := reader.post("/console/bans/lift", lift); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a lift by a read-only session: %d, want 403", resp.StatusCode)
	}
	if until, err := gw.Banned(ctx, "shop-prod", threat.Subject{IP: "198.51.100.7"}); err != nil || until.IsZero() {
		t.Fatalf("the refused lift lifted the ban: %v %v", until, err)
	}

	admin := e.browser(t)
	admin.signIn(e.admin)
	_, body = admin.get("/console/bans?fusionSet=shop-prod")
	csrf = regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if !strings.Contains(body, `action="/console/bans/lift"`) || csrf == nil {
		t.Fatalf("an admin session gets no Lift button:\n%s", body)
	}
	// From another origin, even with the token: refused, nothing lifted.
	cross := url.Values{"csrf": {csrf[1]}, "fusionSet": {"shop-prod"}, "kind": {"address"}, "value": {"198.51.100.7"}}
	if resp, _ := admin.post("/console/bans/lift", cross, "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-origin lift: %d, want 403", resp.StatusCode)
	}
	if resp, _ := admin.get("/console/bans?fusionSet=%3Cscript%3E"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the bans view with a markup set id: %d, want 400", resp.StatusCode)
	}
	// Without the session's CSRF token: refused, nothing lifted.
	bad := url.Values{"csrf": {"x"}, "fusionSet": {"shop-prod"}, "kind": {"address"}, "value": {"198.51.100.7"}}
	if resp, _ := admin.post("/console/bans/lift", bad); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a lift without the CSRF token: %d, want 403", resp.StatusCode)
	}
	lift.Set("csrf", csrf[1])
	resp, _ = admin.post("/console/bans/lift", lift)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/bans?") {
		t.Fatalf("the admin's lift: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The gateways read the same store: the address is let through.
	if until, err := gw.Banned(ctx, "shop-prod", threat.Subject{IP: "198.51.100.7"}); err != nil || !until.IsZero() {
		t.Fatalf("after the lift the gateway still sees a ban until %v (%v)", until, err)
	}
	if until, err := gw.Banned(ctx, "shop-prod", threat.Subject{DeviceID: "<b>dev-1</b>"}); err != nil || until.IsZero() {
		t.Fatalf("lifting the address lifted the device too: %v %v", until, err)
	}
	_, body = admin.get(resp.Header.Get("Location"))
	if !strings.Contains(body, "Lifted the ban of <code>198.51.100.7</code>") || strings.Contains(body, `data-ban="address:198.51.100.7"`) {
		t.Errorf("the page after the lift:\n%s", body)
	}
	var audit struct {
		Items []struct{ Actor, Action, Subject string } `json:"items"`
	}
	e.apiJSON(t, "/v1/audit?limit=100", e.admin, &audit)
	found := false
	for _, a := range audit.Items {
		found = found || (a.Action == "ban.lift" && a.Subject == "fusion-set/shop-prod" && strings.Contains(a.Actor, "admin"))
	}
	if !found {
		t.Errorf("no ban.lift audit entry by the admin token: %+v", audit.Items)
	}

	// Bad forms: refused with 400, nothing lifted.
	for _, f := range []url.Values{
		{"fusionSet": {"Bad Set"}, "kind": {"device"}, "value": {"x"}},
		{"fusionSet": {"shop-prod"}, "kind": {"planet"}, "value": {"x"}},
		{"fusionSet": {"shop-prod"}, "kind": {"device"}, "value": {""}},
	} {
		f.Set("csrf", csrf[1])
		if resp, _ := admin.post("/console/bans/lift", f); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("lift %v: %d, want 400", f, resp.StatusCode)
		}
	}
}

// TestBansViewWithoutStore: without --ban-store the view says how to
// configure one, and a lift is a 404.
func TestBansViewWithoutStore(t *testing.T) {
	e := startEnv(t, "")
	b := e.browser(t)
	b.signIn(e.admin)
	resp, body := b.get("/console/bans")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "--ban-store") {
		t.Fatalf("bans without a store: %d %s", resp.StatusCode, body)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if csrf == nil {
		t.Fatal("no CSRF token on the page")
	}
	if resp, _ := b.post("/console/bans/lift", url.Values{"csrf": {csrf[1]}, "fusionSet": {"s"}, "kind": {"device"}, "value": {"x"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a lift without a store: %d, want 404", resp.StatusCode)
	}
}
