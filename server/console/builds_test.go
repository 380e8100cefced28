package console_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/client"
)

// buildsSetYAML is the fusion set the builds view is tested with.
const buildsSetYAML = "fusion_sets:\n  - id: shop-prod\n    app_id: com.example.shop\n    mode: defense\n"

// publishSet publishes a new fusion set through the API, as an admin.
func publishSet(t *testing.T, e *env, id, doc string) {
	t.Helper()
	req, err := http.NewRequest("PUT", e.ts.URL+"/v1/fusion-sets/"+id, strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("If-None-Match", "*")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publishing %s: %s", id, resp.Status)
	}
}

// seedBuilds publishes shop-prod and, through the API and the enrollment
// listener as CI and apps do, issues three builds: b-1 with two installs
// (one of them revoked), b-2 revoked, b-3 whose stored record is damaged.
func seedBuilds(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	admin, err := client.New(client.Options{Server: e.ts.URL, Token: e.admin, Transport: e.ts.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	publishSet(t, e, "shop-prod", buildsSetYAML)
	builds := map[string]*client.Build{}
	for _, id := range []string{"b-1", "b-2", "b-3"} {
		b, err := admin.IssueBuild(ctx, "shop-prod", client.BuildRequest{AppID: "com.example.shop", BuildID: id}, "")
		if err != nil {
			t.Fatal(err)
		}
		builds[id] = b
	}
	enroll := httptest.NewUnstartedServer(e.srv.EnrollHandler())
	enroll.TLS = server.EnrollTLS(&tls.Config{})
	enroll.StartTLS()
	t.Cleanup(enroll.Close)
	key, leaf, _, err := pki.DecodeBundle(builds["b-1"].Bundle.Data, builds["b-1"].Bundle.Password)
	if err != nil {
		t.Fatal(err)
	}
	bundle := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	tr := enroll.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{*bundle}
	app, err := client.New(client.Options{Server: enroll.URL, Transport: tr, ClientCertificate: bundle})
	if err != nil {
		t.Fatal(err)
	}
	var first *client.InstallCert
	for _, id := range []string{"install-a", "install-b"} {
		_, csr, err := client.NewDeviceKey()
		if err != nil {
			t.Fatal(err)
		}
		got, err := app.Enroll(ctx, "shop-prod", client.EnrollRequest{CSR: csr, InstallID: id})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got
		}
	}
	if _, err := admin.Revoke(ctx, client.RevokeRequest{Serial: first.Serial, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Revoke(ctx, client.RevokeRequest{Reason: "superseded",
		Build: &client.BuildRef{FusionSet: "shop-prod", AppID: "com.example.shop", BuildID: "b-2"}}); err != nil {
		t.Fatal(err)
	}
	// A record changed in the database (by hand, or a restore gone wrong)
	// must show as not verifying.
	if _, err := e.srv.DB().Exec(ctx, `UPDATE certificates SET record = REPLACE(record, '"b-3"', '"b-9"') WHERE build_id = 'b-3'`); err != nil {
		t.Fatal(err)
	}
}

// TestBuildsView: the builds view lists a set's builds with their
// installs, revocations and whether their certified records verify, each
// build linking to its events; a set that does not exist is a 404.
func TestBuildsView(t *testing.T) {
	e := startEnv(t, "")
	seedBuilds(t, e)
	b := e.browser(t)
	b.signIn(e.read)

	resp, body := b.get("/console/builds")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("builds: %d %s", resp.StatusCode, body)
	}
	row := func(build string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<tr data-build="` + build + `">.*?</tr>`).FindString(body)
		if m == "" {
			t.Fatalf("no row for %s in:\n%s", build, body)
		}
		return m
	}
	cell := func(r, class string) string {
		t.Helper()
		m := regexp.MustCompile(`<td class="` + class + `[^"]*">([^<]*)</td>`).FindStringSubmatch(r)
		if m == nil {
			t.Fatalf("no %s cell in %s", class, r)
		}
		return m[1]
	}
	b1, b2, b3 := row("b-1"), row("b-2"), row("b-3")
	if cell(b1, "installs") != "2" || cell(b1, "live") != "1" || cell(b1, "revoked") != "1" || cell(b1, "state") != "valid" || cell(b1, "record") != "verifies" {
		t.Errorf("b-1: installs %s, live %s, revoked %s, %s, record %s; want 2, 1, 1, valid, verifies",
			cell(b1, "installs"), cell(b1, "live"), cell(b1, "revoked"), cell(b1, "state"), cell(b1, "record"))
	}
	if cell(b2, "state") != "revoked (superseded)" || cell(b2, "installs") != "0" {
		t.Errorf("b-2: %s, %s installs; want revoked (superseded), 0", cell(b2, "state"), cell(b2, "installs"))
	}
	if got := cell(b3, "record"); !strings.HasPrefix(got, "does not verify") || !strings.Contains(b3, `class="record bad"`) {
		t.Errorf("b-3's damaged record: %q", got)
	}
	if !strings.Contains(b1, `href="/console/events?build=b-1&amp;fusionSet=shop-prod&amp;range=7d"`) {
		t.Errorf("b-1 does not link to its events: %s", b1)
	}
	if !strings.Contains(body, "3 build certificates") || !strings.Contains(body, "1 revoked; 2 installs enrolled") {
		t.Errorf("the summary line is wrong:\n%s", body)
	}

	if resp, _ := b.get("/console/builds?fusionSet=nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown set: %d, want 404", resp.StatusCode)
	}
	if resp, body := b.get("/console/builds?fusionSet=%3Cscript%3E"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "<script>") {
		t.Errorf("a set name with markup: %d", resp.StatusCode)
	}
	// Without a session: the sign-in page, nothing of the builds.
	anon := e.browser(t)
	if resp, body := anon.get("/console/builds"); resp.StatusCode != http.StatusSeeOther || strings.Contains(body, "b-1") {
		t.Errorf("builds without a session: %d", resp.StatusCode)
	}
}

// TestBuildsViewSetPastTheTabs: a set beyond the first page of tabs is
// still shown by its fusionSet parameter.
func TestBuildsViewSetPastTheTabs(t *testing.T) {
	e := startEnv(t, "")
	for i := range 201 {
		id := fmt.Sprintf("set-%03d", i)
		publishSet(t, e, id, strings.ReplaceAll(buildsSetYAML, "shop-prod", id))
	}
	b := e.browser(t)
	b.signIn(e.read)
	_, body := b.get("/console/builds")
	if strings.Contains(body, ">set-200<") {
		t.Fatal("set-200 is among the tabs: the test no longer reaches past them")
	}
	resp, body := b.get("/console/builds?fusionSet=set-200")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "of <code>set-200</code>") {
		t.Fatalf("set-200 by its parameter: %d %s", resp.StatusCode, body)
	}
}
