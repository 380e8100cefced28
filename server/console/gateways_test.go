package console_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/xdstest"
)

// TestGatewaysView: instances that delivered events are listed with the
// version their webhook sink announced and their newest event; each
// Envoy node of a real control plane shows SYNCED once it ACKed what its
// group serves, its last NACK when it refused a version; an unreachable
// or refusing control plane is said, not a failed page.
func TestGatewaysView(t *testing.T) {
	xds := xdstest.StartControlPlane(t)
	xds.Envoy(t, "envoy-good", nil)
	xds.Envoy(t, "envoy-nack", xdstest.RejectServerName("bad.example.com"))
	xds.WaitStatus(t, "both nodes ACKing v1", func(s serve.Status) bool {
		return len(s.Nodes) == 2 && s.Groups[0].LastACKedVersion == s.Groups[0].Version && len(s.Nodes[0].Acked) == 5 && len(s.Nodes[1].Acked) == 5
	})
	// A route the second node refuses: it NACKs, the group rolls back
	// to v1, and both stay current on v1.
	xds.Fixture.AddRoute("bad.example.com", "app-0")
	xds.Publish(t, "v2")
	xds.WaitStatus(t, "the NACK", func(s serve.Status) bool {
		for _, n := range s.Nodes {
			if n.ID == "envoy-nack" && n.LastNACK != nil {
				return s.Groups[0].RolledBackFrom != ""
			}
		}
		return false
	})
	xds.WaitStatus(t, "both nodes on the snapshot rolled back to", func(s serve.Status) bool {
		for _, n := range s.Nodes {
			for typ, v := range s.Groups[0].Versions {
				if n.Acked[typ] != v {
					return false
				}
			}
		}
		return len(s.Nodes) == 2
	})

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	wrongToken := filepath.Join(t.TempDir(), "wrong.token")
	os.WriteFile(wrongToken, []byte("wrong"), 0o600)

	e := startEnv(t, "", func(c *server.Config) {
		c.XDSStatus = []string{xds.StatusURL, "http://" + deadAddr + "/status"}
		c.XDSStatusTokenFile = xds.TokenFile
	})
	now := e.clock.Now()
	var evs []*threat.Event
	for i, gw := range []struct{ gateway, node string }{{"caddy", "caddy-edge-1"}, {"envoy", "authz-a"}, {"caddy", "caddy-edge-1"}} {
		ev := sampleEvents(now, 1)[0]
		ev.Gateway, ev.Node = gw.gateway, gw.node
		ev.Time = now.Add(time.Duration(i-10) * time.Second)
		evs = append(evs, ev)
	}
	e.deliver(t, evs)
	e.deliver(t, evs[:1]) // a re-delivery: not counted again

	b := e.browser(t)
	b.signIn(e.read)
	resp, page := b.get("/console/gateways")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("gateways view: %d\n%s", resp.StatusCode, page)
	}
	row := func(attr string) string {
		t.Helper()
		m := regexp.MustCompile(`<tr ` + regexp.QuoteMeta(attr) + `[^>]*>.*?</tr>`).FindString(page)
		if m == "" {
			t.Fatalf("no row %s in\n%s", attr, page)
		}
		return m
	}
	caddy := row(`data-gateway="caddy" data-node="caddy-edge-1"`)
	for _, want := range []string{"Caddy", "mcc-webhook/1 mcc/", "gateway", `<td class="count">2</td>`, evs[2].ID} {
		if !strings.Contains(caddy, want) {
			t.Errorf("the Caddy instance's row lacks %q:\n%s", want, caddy)
		}
	}
	authz := row(`data-gateway="envoy" data-node="authz-a"`)
	for _, want := range []string{"mcc authz", `<td class="count">1</td>`, evs[1].ID} {
		if !strings.Contains(authz, want) {
			t.Errorf("the mcc authz instance's row lacks %q:\n%s", want, authz)
		}
	}
	goodRow := row(`data-node="envoy-good"`)
	if !strings.Contains(goodRow, `data-state="SYNCED"`) || strings.Count(goodRow, `data-sync="SYNCED"`) != 5 {
		t.Errorf("the node that ACKed everything is not SYNCED on every type:\n%s", goodRow)
	}
	nackRow := row(`data-node="envoy-nack"`)
	if !strings.Contains(nackRow, `class="bad nack"`) || !strings.Contains(nackRow, "bad.example.com refused by the test") {
		t.Errorf("the node's last NACK is not shown:\n%s", nackRow)
	}
	if !strings.Contains(page, "2 of 2 nodes current") {
		t.Errorf("the summary does not count both nodes current (the group rolled back to what they ACKed)")
	}
	if !strings.Contains(page, "Could not read this control plane") || !strings.Contains(page, deadAddr) {
		t.Errorf("the unreachable control plane is not reported")
	}
	if strings.Contains(page, "xds-admin-token") {
		t.Fatal("the page shows the xds admin token")
	}

	// A token the control plane refuses: said on the page.
	e2 := startEnv(t, "", func(c *server.Config) {
		c.XDSStatus = []string{xds.StatusURL}
		c.XDSStatusTokenFile = wrongToken
	})
	b2 := e2.browser(t)
	b2.signIn(e2.read)
	if resp, page := b2.get("/console/gateways"); resp.StatusCode != http.StatusOK || !strings.Contains(page, "answered 401") {
		t.Errorf("a refused token: %d, page says:\n%s", resp.StatusCode, page)
	}
}

// TestXDSStatusURLs: plain http off loopback (the admin token in clear)
// and URLs with credentials are refused when the server starts.
func TestXDSStatusURLs(t *testing.T) {
	for _, u := range []string{"http://10.0.0.5:18001/status", "http://xds.internal:18001/status", "ftp://127.0.0.1/status",
		"https://user:pw@xds.internal/status", "127.0.0.1:18001"} {
		_, err := server.Open(context.Background(), server.Config{DataDir: t.TempDir(), XDSStatus: []string{u}})
		if err == nil || !strings.Contains(err.Error(), "--xds-status") {
			t.Errorf("%s: %v, want a --xds-status error", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:18001/status", "http://[::1]:18001/status", "http://localhost:18001/status", "https://xds.internal:18001/status"} {
		s, err := server.Open(context.Background(), server.Config{DataDir: t.TempDir(), XDSStatus: []string{u}})
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		s.Close()
	}
}
