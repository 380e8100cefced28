package api_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/client"
	"github.com/mccgate/mcc/server/store"
)

// enrollDoc is bank-prod with install certificates: routes accept installs
// only, two-hour install certificates, small enrollment limits.
const enrollDoc = `fusion_sets:
  - id: bank-prod
    app_id: com.example.bank
    mode: defense
    threat_events: true
    max_lifetime: 400d
    builds:
      blocked: [build-1337]
    device_headers:
      deviceID: X-Device-ID
    installs:
      accept: [install]
      lifetime: 2h
      enrollment:
        window: 1h
        max_per_build: 3
        max_per_address: 100
`

// startEnroll is the API with enrollDoc published.
func startEnroll(t *testing.T, doc string) *apiEnv {
	t.Helper()
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: frozenClock()})
	e.publish(t, doc)
	return e
}

// buildTLS is an issued build's bundle as the app loads it.
func buildTLS(t testing.TB, b issuedBundle) *tls.Certificate {
	t.Helper()
	key, leaf, chain, err := pki.DecodeBundle(b.Data, b.Password)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, ca := range chain {
		c.Certificate = append(c.Certificate, ca.Raw)
	}
	return c
}

// device is one install on a device: its key and the client certificate
// it holds (none before it enrolls).
type device struct {
	installID string
	key       *ecdsa.PrivateKey
	csr       []byte
	cert      *tls.Certificate
	got       installCertJSON
}

type installCertJSON struct {
	Serial, InstallID, Certificate, CA string
	NotBefore, NotAfter, RenewAfter    time.Time
}

func newDevice(t testing.TB, installID string) *device {
	t.Helper()
	key, csr, err := client.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	return &device{installID: installID, key: key, csr: csr}
}

// enrollBody is an enrollment request of d.
func (d *device) enrollBody(deviceID string) string {
	b, _ := json.Marshal(map[string]any{"csr": base64.StdEncoding.EncodeToString(d.csr), "installId": d.installID,
		"device": map[string]string{"deviceID": deviceID}})
	return string(b)
}

// take keeps an issued install certificate as d's client certificate.
func (d *device) take(t testing.TB, r contractResp) {
	t.Helper()
	r.json(t, &d.got)
	leaf, err := pki.ParseCertificatePEM([]byte(d.got.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	d.cert = &tls.Certificate{PrivateKey: d.key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
}

const enrollPath = "/v1/fusion-sets/bank-prod/enroll"

// TestEnrollIssuesInstallCertificate: a build certificate over mTLS gets
// an install certificate for the device's key, with the same identity,
// the build's metadata and the install id, living the set's lifetime; it
// renews from halfway through its lifetime, once (keeping its key, or with
// a new one); a second renewal of the same certificate is a 409 with a
// RATE_ANOMALY event and revokes every live certificate of the install.
func TestEnrollIssuesInstallCertificate(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	b := e.issue(t, "build-4711", map[string]any{"buildUser": "ci", "buildDate": "2026-12-01T08:00:00Z"})
	bc := buildTLS(t, b.Bundle)
	d := newDevice(t, "0b0e5c9a-7d1e-4c59-9a51-1f0c8d2e3a44")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("device-1"), want: 201}))

	leaf := d.cert.Leaf
	if set, app, n := certid.Identity(leaf); n != 1 || set != "bank-prod" || app != "com.example.bank" {
		t.Fatalf("identity %s %s (%d URIs)", set, app, n)
	}
	info, ok, err := certid.ParseBuildInfo(leaf)
	if !ok || err != nil || info.Kind != certid.KindInstall || info.InstallID != d.installID || info.ID != "build-4711" || info.User != "ci" {
		t.Fatalf("install metadata %+v %v %v", info, ok, err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&d.key.PublicKey) {
		t.Fatal("the install certificate is not for the device's key")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != 2*time.Hour+time.Minute {
		t.Fatalf("lifetime %s, want the set's 2h (+1m backdating)", life)
	}
	ca, err := pki.ParseCertificatePEM([]byte(d.got.CA))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: e.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the install certificate does not chain to the set's CA: %v", err)
	}

	var rec struct {
		Kind, InstallID, BuildSerial, Profile string
		Record                                json.RawMessage
	}
	e.json(t, "GET", "/v1/certificates/"+d.got.Serial, e.token[auth.ScopeRead], nil, http.StatusOK, &rec)
	if rec.Kind != "install" || rec.InstallID != d.installID || rec.BuildSerial != b.Certificate.Serial || rec.Profile != "device" || string(rec.Record) != "null" {
		t.Fatalf("stored install certificate %+v", rec)
	}

	// Too early: before halfway through its lifetime a certificate does
	// not renew (a 409 naming when it may, with Retry-After).
	r := e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: d.cert, body: `{}`, want: 409})
	if !strings.Contains(string(r.body), "renewFrom") || r.header.Get("Retry-After") == "" {
		t.Fatalf("early renewal: %s %v", r.body, r.header)
	}

	// Renew keeping the key, then a copy of the old certificate renews
	// again: a fork. Both branches lose their certificates.
	e.clock.Add(61 * time.Minute)
	old := d.cert
	d.take(t, e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: old, body: `{}`, want: 201}))
	if d.got.Serial == rec.BuildSerial || !d.cert.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(&d.key.PublicKey) {
		t.Fatal("a renewal without a CSR must keep the key")
	}
	renewed := d.got.Serial
	// The same key asking again is a retry: the same certificate, 200.
	var again installCertJSON
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: old, body: `{}`, want: 200}).json(t, &again)
	if again.Serial != renewed || again.Certificate != d.got.Certificate {
		t.Fatalf("a retried renewal answered %s, want the first renewal's %s", again.Serial, renewed)
	}
	// A copy of the old certificate asking for its own key forks it.
	fork := newDevice(t, d.installID)
	forkBody, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(fork.csr)})
	r = e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: old, body: string(forkBody), want: 409})
	if !strings.Contains(string(r.body), "RATE_ANOMALY") {
		t.Fatalf("second renewal: %s", r.body)
	}
	if n := countEvents(t, e, "RATE_ANOMALY"); n != 1 {
		t.Fatalf("%d RATE_ANOMALY events after a second renewal, want 1", n)
	}
	for _, serial := range []string{renewed, pki.FormatSerial(old.Leaf.SerialNumber)} {
		c, err := e.db.Certificate(context.Background(), serial)
		if err != nil || c.RevokedAt.IsZero() || c.RevokedBy != "enrollment" {
			t.Fatalf("install certificate %s after the fork: %+v %v, want revoked by the enrollment", serial, c, err)
		}
	}
	if b, err := e.db.Certificate(context.Background(), b.Certificate.Serial); err != nil || !b.RevokedAt.IsZero() {
		t.Fatalf("the build certificate was revoked with the forked install: %+v %v", b, err)
	}
	r = e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: d.cert, body: `{}`, want: 403})
	if !strings.Contains(string(r.body), "CERT_REVOKED") {
		t.Fatalf("renewal with the forked branch's certificate: %s", r.body)
	}

	// A new install renews with a new key.
	d = newDevice(t, "5f4e0a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("device-2"), want: 201}))
	e.clock.Add(61 * time.Minute)
	next := newDevice(t, d.installID)
	body, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(next.csr)})
	next.take(t, e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: d.cert, body: string(body), want: 201}))
	if !next.cert.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(&next.key.PublicKey) {
		t.Fatal("a renewal with a CSR must certify the new key")
	}

	// What the renewal issued is revoked by serial; the device, whose
	// answer was lost, retries with the same key: the answer is that
	// revocation (CERT_REVOKED naming it), not a fork. Nothing else of the
	// install is revoked and no RATE_ANOMALY is stored.
	successor := next.got.Serial
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serial": successor, "reason": "key-compromise"}, http.StatusOK, nil)
	r = e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: d.cert, body: string(body), want: 403})
	if !strings.Contains(string(r.body), "CERT_REVOKED") || !strings.Contains(string(r.body), successor) {
		t.Fatalf("a retried renewal whose certificate was revoked: %s", r.body)
	}
	if c, err := e.db.Certificate(context.Background(), pki.FormatSerial(d.cert.Leaf.SerialNumber)); err != nil || !c.RevokedAt.IsZero() {
		t.Fatalf("the renewed certificate was revoked as a fork: %+v %v", c, err)
	}
	if n := countEvents(t, e, "RATE_ANOMALY"); n != 1 {
		t.Fatalf("%d RATE_ANOMALY events, want still 1", n)
	}
}

// countEvents counts the stored events of reason.
func countEvents(t *testing.T, e *apiEnv, reason string) int {
	t.Helper()
	var page struct {
		Events []json.RawMessage `json:"items"`
	}
	e.json(t, "GET", "/v1/events?reason="+reason, e.token[auth.ScopeRead], nil, http.StatusOK, &page)
	return len(page.Events)
}

// TestEnrollRefusals: what an attacker sends the enrollment routes is
// refused with the reason, and a refused certificate leaves an event.
func TestEnrollRefusals(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	b := e.issue(t, "build-4711", nil)
	bc := buildTLS(t, b.Bundle)
	d := newDevice(t, "install-a")

	// Without a certificate: the token API listener answers 401.
	e.send(t, contractReq{method: "POST", path: enrollPath, token: e.token[auth.ScopeAdmin], body: d.enrollBody("x"), want: 401})
	// A token route is not served on the enrollment listener.
	if resp, _ := roundTripWith(t, e.enrollClient(bc), newRequest(t, e.enroll.URL, "GET", "/v1/certificates", e.token[auth.ScopeAdmin], "")); resp.StatusCode != 404 {
		t.Fatalf("a token route on the enrollment listener: %d, want 404", resp.StatusCode)
	}

	// A certificate from another CA, with the right identity: untrusted.
	foreign, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := foreign.Issue(pki.IssueRequest{FusionSet: "bank-prod", AppID: "com.example.bank",
		Build: certid.BuildInfo{ID: "build-4711", Date: time.Now().Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	fc := &tls.Certificate{PrivateKey: fi.Key, Leaf: fi.Cert, Certificate: [][]byte{fi.Cert.Raw}}
	r := e.send(t, contractReq{method: "POST", path: enrollPath, cert: fc, body: d.enrollBody("x"), want: 403})
	if !strings.Contains(string(r.body), "CERT_UNTRUSTED") || countEvents(t, e, "CERT_UNTRUSTED") != 1 {
		t.Fatalf("foreign CA: %s", r.body)
	}

	// Malformed requests are 422 with the field.
	for _, c := range []struct{ body, field string }{
		{`{"installId":"a"}`, "csr"},
		{`{"csr":"bm90IGEgY3Ny","installId":"a"}`, "csr"},
		{`{"csr":"` + base64.StdEncoding.EncodeToString(d.csr) + `","installId":"../etc"}`, "installId"},
		{`{"csr":"` + base64.StdEncoding.EncodeToString(d.csr) + `","installId":"a","device":{"password":"x"}}`, "device.password"},
		{`{"csr":"` + base64.StdEncoding.EncodeToString(d.csr) + `","installId":"a","device":{"deviceID":"a\u0000b"}}`, "device.deviceID"},
	} {
		r := e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: c.body, want: 422})
		if !strings.Contains(string(r.body), `"field":"`+c.field+`"`) {
			t.Errorf("%s: %s, want field %s", c.body, r.body, c.field)
		}
	}
	// A CSR for an RSA key, or a P-384 key, is not what a device makes.
	for _, k := range []string{"rsa", "p384"} {
		csr := otherKeyCSR(t, k)
		body, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(csr), "installId": "a"})
		e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: string(body), want: 422})
	}

	// An install certificate cannot enroll another install, a build
	// certificate cannot renew.
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("x"), want: 201}))
	e.send(t, contractReq{method: "POST", path: enrollPath, cert: d.cert, body: newDevice(t, "install-b").enrollBody("y"), want: 403})
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: bc, body: `{}`, want: 403})

	// A build the set blocks after it was issued does not enroll.
	if resp, body := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin],
		strings.Replace(enrollDoc, "blocked: [build-1337]", "blocked: [build-1337, build-4711]", 1),
		"Content-Type", "application/yaml", "If-Match", `"1"`); resp.StatusCode != http.StatusOK {
		t.Fatalf("blocking build-4711: %d %s", resp.StatusCode, body)
	}
	r = e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "install-c").enrollBody("x"), want: 403})
	if !strings.Contains(string(r.body), "BUILD_BLOCKED") {
		t.Fatalf("blocked build: %s", r.body)
	}
}

// otherKeyCSR is a CSR for an RSA or P-384 key.
func otherKeyCSR(t *testing.T, kind string) []byte {
	t.Helper()
	var key crypto.Signer
	var err error
	if kind == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestEnrollLimitsAndRevocation: past max_per_build an enrollment is a 429
// and a RATE_ANOMALY event naming the build certificate; revoking the
// installs of the build keeps the build enrolling, revoking the build
// stops its enrollments and its installs' renewals at once.
func TestEnrollLimitsAndRevocation(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	b := e.issue(t, "build-4711", nil)
	bc := buildTLS(t, b.Bundle)
	var devices []*device
	for i := range 3 {
		d := newDevice(t, fmt.Sprintf("install-%d", i))
		d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("dev"), want: 201}))
		devices = append(devices, d)
	}
	r := e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "install-9").enrollBody("dev"), want: 429})
	if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "max_per_build") {
		t.Fatalf("over the limit: %s", r.body)
	}
	var page struct {
		Events []struct {
			ReasonData map[string]any `json:"reasonData"`
			Action     string         `json:"action"`
			Gateway    string         `json:"gateway"`
		} `json:"items"`
	}
	e.json(t, "GET", "/v1/events?reason=RATE_ANOMALY", e.token[auth.ScopeRead], nil, http.StatusOK, &page)
	if len(page.Events) != 1 || page.Events[0].ReasonData["buildSerial"] != b.Certificate.Serial ||
		page.Events[0].ReasonData["enrollments"] != float64(3) || page.Events[0].Action != "blocked" || page.Events[0].Gateway != "server" {
		t.Fatalf("limit events %+v", page.Events)
	}
	// The window moves on: enrolling works again.
	e.clock.Add(61 * time.Minute)
	d := newDevice(t, "install-late")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("dev"), want: 201}))

	// One install's certificates.
	var res struct{ Revoked []string }
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke],
		map[string]any{"install": map[string]string{"fusionSet": "bank-prod", "installId": "install-0"}}, http.StatusOK, &res)
	if len(res.Revoked) != 1 || res.Revoked[0] != devices[0].got.Serial {
		t.Fatalf("revoking install-0: %v", res.Revoked)
	}
	e.send(t, contractReq{method: "POST", path: "/v1/fusion-sets/bank-prod/renew", cert: devices[0].cert, body: `{}`, want: 403})
	// Every install of the build, keeping the build.
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"build": map[string]any{
		"fusionSet": "bank-prod", "appId": "com.example.bank", "buildId": "build-4711", "kinds": []string{"install"}}}, http.StatusOK, &res)
	if len(res.Revoked) != 3 { // install-1, install-2, install-late
		t.Fatalf("revoking the installs of the build: %v", res.Revoked)
	}
	e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "install-new").enrollBody("dev"), want: 201})
	// The build: its enrollments stop.
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"build": map[string]any{
		"fusionSet": "bank-prod", "appId": "com.example.bank", "buildId": "build-4711", "kinds": []string{"build"}}}, http.StatusOK, &res)
	r = e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "install-x").enrollBody("dev"), want: 403})
	if !strings.Contains(string(r.body), "CERT_REVOKED") {
		t.Fatalf("revoked build enrolling: %s", r.body)
	}
	e.send(t, contractReq{method: "POST", path: "/v1/revocations", token: e.token[auth.ScopeRevoke],
		body: `{"build":{"fusionSet":"bank-prod","appId":"com.example.bank","buildId":"build-4711","kinds":["other"]}}`, want: 422})
	stored, err := e.db.Certificate(context.Background(), d.got.Serial)
	if err != nil || stored.Kind != store.KindInstall || stored.RevokedAt.IsZero() {
		t.Fatalf("install-late after revocation: %+v %v", stored, err)
	}
}

// TestEnrollGoClient: the Go client (what `mcc enroll` and the client kit
// run) enrolls and renews against the enrollment listener.
func TestEnrollGoClient(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	pool := e.enroll.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c, err := client.New(client.Options{Server: e.enroll.URL, ClientCertificate: bc,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{*bc}}}})
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := client.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := c.Enroll(ctx, "bank-prod", client.EnrollRequest{CSR: csr, InstallID: "go-client-1", Device: map[string]string{"deviceID": "d-1"}})
	if err != nil || got.InstallID != "go-client-1" || !got.RenewAfter.After(got.NotBefore) {
		t.Fatalf("enroll: %+v %v", got, err)
	}
	leaf, err := pki.ParseCertificatePEM([]byte(got.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	ic := tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	rc, err := client.New(client.Options{Server: e.enroll.URL, ClientCertificate: &ic,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{ic}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Renew(ctx, "bank-prod", nil); !client.IsProblem(err, "conflict") {
		t.Fatalf("renewal right after enrolling: %v, want a conflict problem (too early)", err)
	}
	e.clock.Add(61 * time.Minute)
	first, err := rc.Renew(ctx, "bank-prod", nil)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if again, err := rc.Renew(ctx, "bank-prod", nil); err != nil || again.Serial != first.Serial {
		t.Fatalf("a retried renewal: %+v %v, want the first renewal's %s", again, err, first.Serial)
	}
	if _, err := c.Challenge(ctx, "bank-prod", "go-client-1"); err != nil {
		t.Fatalf("challenge: %v", err)
	}
}

// TestEnrollImportedCABuild: a build certificate its CA signed before the
// CA was imported enrolls; it is recorded at that first enrollment
// (profile imported), so the API can revoke it, which stops it at once.
func TestEnrollImportedCABuild(t *testing.T) {
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: frozenClock()})
	caDir := filepath.Join(t.TempDir(), "ca")
	ca, err := pki.InitCA(caDir, pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.api.Authorities.Import(context.Background(), "bank-prod", caDir, "cli:test"); err != nil {
		t.Fatal(err)
	}
	e.publish(t, enrollDoc)
	old, err := ca.Issue(pki.IssueRequest{FusionSet: "bank-prod", AppID: "com.example.bank",
		Build: certid.BuildInfo{ID: "offline-1", Date: time.Now().Add(-24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	bc := &tls.Certificate{PrivateKey: old.Key, Leaf: old.Cert, Certificate: [][]byte{old.Cert.Raw}}
	e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "imp-1").enrollBody("d"), want: 201})
	serial := pki.FormatSerial(old.Cert.SerialNumber)
	var rec struct{ Kind, Profile, IssuedBy string }
	e.json(t, "GET", "/v1/certificates/"+serial, e.token[auth.ScopeRead], nil, http.StatusOK, &rec)
	if rec.Kind != "build" || rec.Profile != "imported" || rec.IssuedBy != "first-enrollment" {
		t.Fatalf("recorded build %+v", rec)
	}
	e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "imp-2").enrollBody("d"), want: 201})
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"serial": serial}, http.StatusOK, nil)
	r := e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: newDevice(t, "imp-3").enrollBody("d"), want: 403})
	if !strings.Contains(string(r.body), "CERT_REVOKED") {
		t.Fatalf("revoked imported build: %s", r.body)
	}
}

// TestEnrollAttestationPolicy: with attestation required, the API asks for
// it, binds the challenge to the certificate and the install, and hands
// the evidence to the verifier (the Android chain checks themselves are
// pki/attestation's tests, on built and real published chains).
func TestEnrollAttestationPolicy(t *testing.T) {
	doc := strings.Replace(enrollDoc, "      enrollment:", `      attestation:
        mode: required
        packages: [com.example.bank]
        signing_cert_digests: ["`+strings.Repeat("ab", 32)+`"]
      enrollment:`, 1)
	e := startEnroll(t, doc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	d := newDevice(t, "att-1")
	r := e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("x"), want: 403})
	if !strings.Contains(string(r.body), `"attestation":"missing"`) {
		t.Fatalf("no attestation: %s", r.body)
	}
	var ch struct{ Challenge string }
	e.send(t, contractReq{method: "POST", path: enrollPath + "/challenge", cert: bc, body: `{"installId":"att-1"}`, want: 200}).json(t, &ch)
	with := func(installID, challenge, data string) string {
		b, _ := json.Marshal(map[string]any{"csr": base64.StdEncoding.EncodeToString(d.csr), "installId": installID,
			"attestation": map[string]string{"format": "android-key", "data": data, "challenge": challenge}})
		return string(b)
	}
	garbage := base64.StdEncoding.EncodeToString([]byte("not a certificate chain"))
	// The challenge of att-1 is not att-2's.
	r = e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: with("att-2", ch.Challenge, garbage), want: 403})
	if !strings.Contains(string(r.body), `"attestation":"challenge"`) {
		t.Fatalf("another install's challenge: %s", r.body)
	}
	// Nor does it live past its ten minutes.
	e.clock.Add(11 * time.Minute)
	r = e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: with("att-1", ch.Challenge, garbage), want: 403})
	if !strings.Contains(string(r.body), `"attestation":"challenge"`) {
		t.Fatalf("an expired challenge: %s", r.body)
	}
	// A fresh challenge reaches the verifier, which refuses the evidence.
	e.send(t, contractReq{method: "POST", path: enrollPath + "/challenge", cert: bc, body: `{"installId":"att-1"}`, want: 200}).json(t, &ch)
	r = e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: with("att-1", ch.Challenge, garbage), want: 403})
	if !strings.Contains(string(r.body), `"attestation":"malformed"`) {
		t.Fatalf("garbage evidence: %s", r.body)
	}
	e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: with("att-1", ch.Challenge, "%%%"), want: 422})
}
