package api_test

// An attacker's review of the enrollment listener (issue 13): each test
// drives the real API on a real SQLite directory through the real mTLS
// enrollment listener. A test that reproduces a finding is skipped with
// its id; the others are the defences that held, kept as regression tests.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

const attackRenewPath = "/v1/fusion-sets/bank-prod/renew"

// attackPost posts body to the enrollment listener presenting cert,
// outside the contract checker (hostile bodies, concurrent callers).
func attackPost(t testing.TB, e *apiEnv, cert *tls.Certificate, path, body string) (int, []byte) {
	t.Helper()
	req := newRequest(t, e.enroll.URL, "POST", path, "", body, "Content-Type", "application/json")
	resp, data := roundTripWith(t, e.enrollClient(cert), req)
	if resp.StatusCode >= 500 {
		t.Errorf("POST %s: %d (no input may yield a 5xx): %s", path, resp.StatusCode, data)
	}
	return resp.StatusCode, data
}

// attackSelfSigned is a certificate the attacker makes alone: it copies
// the identity URIs and build metadata of a genuine leaf, adds uris, and
// is a CA when isCA.
func attackSelfSigned(t *testing.T, genuine *x509.Certificate, isCA bool, uris ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: genuine.SerialNumber, Subject: genuine.Subject, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), URIs: genuine.URIs, IsCA: isCA, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	for _, ext := range genuine.Extensions {
		if len(ext.Id) < 3 || ext.Id[0] != 2 || ext.Id[1] != 5 || ext.Id[2] != 29 { // not a standard X.509 extension: the build metadata
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
		}
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{der}}
}

// TestAttackForgedCertificates: certificates the attacker makes (self
// signed with the genuine identity and build metadata, a CA certificate
// as the leaf, two identity URIs, a foreign leaf sent with the set's real
// CA as a fake intermediate) neither enroll nor renew.
func TestAttackForgedCertificates(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	d := newDevice(t, "victim-1")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("x"), want: 201}))

	foreign, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := foreign.Issue(pki.IssueRequest{FusionSet: "bank-prod", AppID: "com.example.bank",
		Build: certid.BuildInfo{ID: "build-4711", Date: time.Now().Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	withRealCA := &tls.Certificate{PrivateKey: fi.Key, Leaf: fi.Cert, Certificate: append([][]byte{fi.Cert.Raw}, bc.Certificate[1:]...)}
	for name, c := range map[string]*tls.Certificate{
		"self-signed build":           attackSelfSigned(t, bc.Leaf, false),
		"self-signed CA as leaf":      attackSelfSigned(t, bc.Leaf, true),
		"two identity URIs":           attackSelfSigned(t, bc.Leaf, false, certid.IdentityURI("bank-prod", "com.example.other")),
		"self-signed install":         attackSelfSigned(t, d.cert.Leaf, false),
		"foreign leaf, real CA chain": withRealCA,
	} {
		for _, path := range []string{enrollPath, attackRenewPath} {
			body := newDevice(t, "attacker-1").enrollBody("x")
			if path == attackRenewPath {
				body = `{}`
			}
			if code, data := attackPost(t, e, c, path, body); code != http.StatusForbidden {
				t.Errorf("%s on %s: %d, want 403: %s", name, path, code, data)
			}
		}
	}
}

// TestAttackCrossSetBuild: a build certificate of set A (its own CA) does
// not enroll into set B published on the same server, and an install
// certificate of A does not renew in B.
func TestAttackCrossSetBuild(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	shop := strings.NewReplacer("bank-prod", "shop-prod", "com.example.bank", "com.example.shop").Replace(enrollDoc)
	if resp, body := e.do(t, "PUT", "/v1/fusion-sets/shop-prod", e.token[auth.ScopeAdmin], shop, "Content-Type", "application/yaml"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("publishing shop-prod: %d %s", resp.StatusCode, body)
	}
	var sb issuedBuild
	e.json(t, "POST", "/v1/fusion-sets/shop-prod/builds", e.token[auth.ScopeIssue],
		map[string]any{"appId": "com.example.shop", "buildId": "build-4711"}, http.StatusCreated, &sb)
	shopBuild := buildTLS(t, sb.Bundle)
	d := newDevice(t, "shop-install")
	code, data := attackPost(t, e, shopBuild, "/v1/fusion-sets/shop-prod/enroll", d.enrollBody("x"))
	if code != http.StatusCreated {
		t.Fatalf("shop-prod enrolling in its own set: %d %s", code, data)
	}
	d.take(t, contractResp{status: code, body: data})
	if code, data := attackPost(t, e, shopBuild, enrollPath, newDevice(t, "x").enrollBody("x")); code != http.StatusForbidden {
		t.Errorf("shop-prod build enrolling into bank-prod: %d %s", code, data)
	}
	if code, data := attackPost(t, e, d.cert, attackRenewPath, `{}`); code != http.StatusForbidden {
		t.Errorf("shop-prod install renewing in bank-prod: %d %s", code, data)
	}
	// A set that does not exist, or a path trick, is no way around it.
	for _, p := range []string{"/v1/fusion-sets/nope/enroll", "/v1/fusion-sets/bank-prod%2F..%2Fshop-prod/enroll", "/v1/fusion-sets/BANK-PROD/enroll"} {
		if code, data := attackPost(t, e, shopBuild, p, newDevice(t, "y").enrollBody("x")); code < 400 {
			t.Errorf("%s: %d %s", p, code, data)
		}
	}
}

// TestAttackRenewLifecycle: an expired install certificate, and an
// install certificate whose build was revoked (the install itself not),
// do not renew.
func TestAttackRenewLifecycle(t *testing.T) {
	// Enrolled three hours ago: the 2h certificate has expired by now (the
	// set's CA is made when it is published, so then too).
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: &apiClock{frozen: time.Now().UTC().Add(-3 * time.Hour)}})
	e.publish(t, enrollDoc)
	b := e.issue(t, "build-4711", nil)
	bc := buildTLS(t, b.Bundle)
	old := newDevice(t, "expired-1")
	old.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: old.enrollBody("x"), want: 201}))
	e.clock.Add(3 * time.Hour)
	if !old.cert.Leaf.NotAfter.Before(time.Now()) {
		t.Fatalf("setup: the install certificate is not expired: %s", old.cert.Leaf.NotAfter)
	}
	if code, data := attackPost(t, e, old.cert, attackRenewPath, `{}`); code != http.StatusForbidden {
		t.Errorf("expired install renewing: %d %s", code, data)
	}

	d := newDevice(t, "live-1")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("x"), want: 201}))
	var res struct{ Revoked []string }
	e.json(t, "POST", "/v1/revocations", e.token[auth.ScopeRevoke], map[string]any{"build": map[string]any{
		"fusionSet": "bank-prod", "appId": "com.example.bank", "buildId": "build-4711", "kinds": []string{"build"}}}, http.StatusOK, &res)
	if len(res.Revoked) != 1 || res.Revoked[0] != b.Certificate.Serial {
		t.Fatalf("revoking the build only: %v", res.Revoked)
	}
	code, data := attackPost(t, e, d.cert, attackRenewPath, `{}`)
	if code != http.StatusForbidden || !strings.Contains(string(data), "CERT_REVOKED") {
		t.Errorf("install of a revoked build renewing: %d %s", code, data)
	}
}

// TestAttackRenewRace: one install certificate renewing from many
// connections at once gets exactly one new certificate (the unique
// constraint holds on SQLite): for the same key the others are retries
// answered with it; for new keys they fork the install and revoke it.
func TestAttackRenewRace(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	d := newDevice(t, "race-1")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("x"), want: 201}))
	e.clock.Add(61 * time.Minute)
	var mu sync.Mutex
	serials := map[string]bool{}
	codes := attackConcurrently(t, 12, func(i int) (int, []byte) {
		code, data := attackPost(t, e, d.cert, attackRenewPath, `{}`)
		var got installCertJSON
		if json.Unmarshal(data, &got) == nil && got.Serial != "" {
			mu.Lock()
			serials[got.Serial] = true
			mu.Unlock()
		}
		return code, data
	})
	if codes[http.StatusCreated] != 1 || codes[http.StatusOK] != 11 || len(serials) != 1 {
		t.Fatalf("12 concurrent renewals of one certificate: %v with %d certificates, want one 201 and eleven 200 retries of one certificate", codes, len(serials))
	}
	// Concurrent renewals for new keys: one wins, the rest fork the
	// install, so none of the new keys is left holding a live certificate
	// beside another.
	f := newDevice(t, "race-2")
	f.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: f.enrollBody("x"), want: 201}))
	e.clock.Add(61 * time.Minute)
	codes = attackConcurrently(t, 8, func(i int) (int, []byte) {
		csr := newDevice(t, "race-2").csr
		body, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(csr)})
		return attackPost(t, e, f.cert, attackRenewPath, string(body))
	})
	live := 0
	err := e.db.Tx(context.Background(), func(tx *store.Tx) error {
		certs, err := tx.LiveInstallCertificates(context.Background(), "bank-prod", "race-2", e.clock.Now())
		live = len(certs)
		return err
	})
	if err != nil || codes[http.StatusCreated] != 1 || codes[http.StatusCreated]+codes[http.StatusConflict]+codes[http.StatusForbidden] != 8 || live != 0 {
		t.Fatalf("8 concurrent renewals for new keys: %v, %d live certificates of the install (%v), want one 201, the rest refused, none live", codes, live, err)
	}
}

// attackConcurrently runs f n times at once and counts the statuses.
func attackConcurrently(t *testing.T, n int, f func(i int) (int, []byte)) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, _ := f(i)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

// TestAttackEnrollLimitRace: max_per_build holds exactly under many
// concurrent enrollments, and varying the install id or the device id
// does not get around it.
func TestAttackEnrollLimitRace(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	devices := make([]*device, 16)
	for i := range devices {
		devices[i] = newDevice(t, fmt.Sprintf("flood-%d", i))
	}
	codes := attackConcurrently(t, len(devices), func(i int) (int, []byte) {
		return attackPost(t, e, bc, enrollPath, devices[i].enrollBody(fmt.Sprintf("device-%d", i)))
	})
	if codes[http.StatusCreated] != 3 || codes[http.StatusTooManyRequests] != 13 {
		t.Fatalf("16 concurrent enrollments with max_per_build 3: %v, want three 201 and thirteen 429", codes)
	}
	// Thirteen refusals, but refusal events are capped per fusion set,
	// reason and client address (10 a minute) so a flood cannot fill the
	// event table: the cap, not the count, is what must hold.
	if n := countEvents(t, e, "RATE_ANOMALY"); n != 10 {
		t.Errorf("%d RATE_ANOMALY events, want the cap of 10 (refusalEventsPerMinute)", n)
	}
	// Renewals do not count, and do not open room for enrollments.
	if code, data := attackPost(t, e, bc, enrollPath, newDevice(t, "flood-late").enrollBody("z")); code != http.StatusTooManyRequests {
		t.Errorf("an enrollment after the race: %d %s", code, data)
	}
}

// TestAttackCSRCannotChooseIdentity: a CSR naming another identity, SANs
// and extensions yields a certificate with the set's identity only, and
// a renewal CSR for an RSA or P-384 key is refused.
func TestAttackCSRCannotChooseIdentity(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil, _ := url.Parse(certid.IdentityURI("shop-prod", "com.example.shop"))
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "admin", Organization: []string{"mcc"}}, DNSNames: []string{"api.example.com"},
		URIs: []*url.URL{evil}, ExtraExtensions: []pkix.Extension{{Id: []int{2, 5, 29, 19}, Critical: true, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"csr": base64.StdEncoding.EncodeToString(csr), "installId": "chooser"})
	code, data := attackPost(t, e, bc, enrollPath, string(body))
	if code != http.StatusCreated {
		// A refusal is a defence too.
		t.Logf("a CSR asking for SANs and CA: %d %s", code, data)
	} else {
		d := &device{installID: "chooser", key: key}
		d.take(t, contractResp{status: code, body: data})
		leaf := d.cert.Leaf
		set, app, n := certid.Identity(leaf)
		if n != 1 || set != "bank-prod" || app != "com.example.bank" || len(leaf.DNSNames) != 0 || leaf.IsCA || leaf.Subject.CommonName == "admin" {
			t.Fatalf("the CSR chose part of the certificate: identity %s %s (%d), DNS %v, CA %v, subject %s", set, app, n, leaf.DNSNames, leaf.IsCA, leaf.Subject)
		}
		e.clock.Add(61 * time.Minute) // renewal opens halfway through the 2 h lifetime
		for _, k := range []string{"rsa", "p384"} {
			body, _ := json.Marshal(map[string]string{"csr": base64.StdEncoding.EncodeToString(otherKeyCSR(t, k))})
			if code, data := attackPost(t, e, d.cert, attackRenewPath, string(body)); code != http.StatusUnprocessableEntity {
				t.Errorf("renewing with a %s CSR: %d %s", k, code, data)
			}
		}
	}
	// A CSR signed by another key than the one it names (a stolen public key).
	other := newDevice(t, "other")
	forged := append([]byte(nil), other.csr...)
	forged[len(forged)-5] ^= 0xff
	body, _ = json.Marshal(map[string]any{"csr": base64.StdEncoding.EncodeToString(forged), "installId": "stolen-key"})
	if code, data := attackPost(t, e, bc, enrollPath, string(body)); code != http.StatusUnprocessableEntity {
		t.Errorf("a CSR whose signature does not verify: %d %s", code, data)
	}
}

// attestDoc is enrollDoc with attestation optional: the challenge is
// checked whenever evidence is sent.
var attestDoc = strings.Replace(enrollDoc, "      lifetime: 2h\n",
	"      lifetime: 2h\n      attestation:\n        mode: optional\n        packages: [com.example.bank]\n        signing_cert_digests: [\"abababababababababababababababababababababababababababababababab\"]\n", 1)

// TestAttackAttestationChallenge: a challenge made for one install, for
// another build certificate, or expired, does not pass for another
// enrollment; garbage evidence is a 4xx.
func TestAttackAttestationChallenge(t *testing.T) {
	e := startEnroll(t, attestDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	bc2 := buildTLS(t, e.issue(t, "build-4712", nil).Bundle)
	challenge := func(cert *tls.Certificate, installID string) string {
		code, data := attackPost(t, e, cert, enrollPath+"/challenge", `{"installId":"`+installID+`"}`)
		var c struct{ Challenge string }
		if code != http.StatusOK || json.Unmarshal(data, &c) != nil || c.Challenge == "" {
			t.Fatalf("challenge: %d %s", code, data)
		}
		return c.Challenge
	}
	enroll := func(cert *tls.Certificate, installID, ch, data string) (int, []byte) {
		d := newDevice(t, installID)
		body, _ := json.Marshal(map[string]any{"csr": base64.StdEncoding.EncodeToString(d.csr), "installId": installID,
			"attestation": map[string]string{"format": "android-key", "data": data, "challenge": ch}})
		return attackPost(t, e, cert, enrollPath, string(body))
	}
	junk := base64.StdEncoding.EncodeToString([]byte("not a certificate chain"))
	chA := challenge(bc, "install-a")
	for name, c := range map[string]struct {
		cert      *tls.Certificate
		installID string
		ch        string
	}{
		"another install":         {bc, "install-b", chA},
		"another build":           {bc2, "install-a", chA},
		"garbage challenge":       {bc, "install-a", "!!!"},
		"empty challenge":         {bc, "install-a", ""},
		"truncated challenge":     {bc, "install-a", chA[:20]},
		"padded base64 challenge": {bc, "install-a", chA + "="},
	} {
		code, data := enroll(c.cert, c.installID, c.ch, junk)
		if code != http.StatusForbidden || !strings.Contains(string(data), `"challenge"`) {
			t.Errorf("%s: %d %s, want 403 attestation challenge", name, code, data)
		}
	}
	// The right challenge gets to the evidence, which is refused.
	if code, data := enroll(bc, "install-a", chA, junk); code != http.StatusForbidden || strings.Contains(string(data), `"attestation":"challenge"`) {
		t.Errorf("the right challenge with junk evidence: %d %s", code, data)
	}
	if code, data := enroll(bc, "install-a", chA, "%%% not base64"); code != http.StatusUnprocessableEntity {
		t.Errorf("evidence that is not base64: %d %s", code, data)
	}
	// Expired: two steps later.
	e.clock.Add(2*challengeStepForTest + time.Second)
	if code, data := enroll(bc, "install-a", chA, junk); code != http.StatusForbidden || !strings.Contains(string(data), `"challenge"`) {
		t.Errorf("an expired challenge: %d %s", code, data)
	}
}

// challengeStepForTest is enroll.go's challengeStep.
const challengeStepForTest = 5 * time.Minute

// TestAttackHostileBodies: bodies over the limit, deeply nested JSON,
// unknown fields and a body of the wrong type are 4xx, never 5xx.
func TestAttackHostileBodies(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	deep := `{"installId":"a","csr":"x","device":` + strings.Repeat(`{"a":`, 100000) + `1` + strings.Repeat(`}`, 100000) + `}`
	deepArr := `{"x":` + strings.Repeat(`[`, 500000) + strings.Repeat(`]`, 500000) + `}`
	for name, body := range map[string]string{
		"2 MiB":          `{"installId":"` + strings.Repeat("a", 2<<20) + `"}`,
		"deep objects":   deep,
		"deep arrays":    deepArr,
		"unknown field":  `{"installId":"a","csr":"x","isAdmin":true}`,
		"array body":     `[]`,
		"trailing data":  `{"installId":"a"}{"installId":"b"}`,
		"huge device":    `{"installId":"a","csr":"x","device":{"deviceID":"` + strings.Repeat("x", 100000) + `"}}`,
		"many keys":      `{"installId":"a","csr":"x","device":{` + attackManyKeys(5000) + `}}`,
		"long installId": `{"installId":"` + strings.Repeat("a", 10000) + `","csr":"x"}`,
	} {
		for _, path := range []string{enrollPath, attackRenewPath, enrollPath + "/challenge"} {
			code, data := attackPost(t, e, bc, path, body)
			if code < 400 || code >= 500 {
				t.Errorf("%s on %s: %d %s", name, path, code, data)
			}
			if len(data) > 4096 {
				t.Errorf("%s on %s: a %d-byte problem echoes the input", name, path, len(data))
			}
		}
	}
}

func attackManyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	return b.String()
}

// TestAttackNoCertificate: without a client certificate the enrollment
// listener's handshake fails, and a token does not stand in for one on
// either listener.
func TestAttackNoCertificate(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	req := newRequest(t, e.enroll.URL, "POST", enrollPath, e.token[auth.ScopeAdmin], newDevice(t, "a").enrollBody("x"), "Content-Type", "application/json")
	if resp, err := e.enroll.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the enrollment listener answered %d without a client certificate", resp.StatusCode)
	}
	for _, tok := range e.token {
		e.send(t, contractReq{method: "POST", path: enrollPath, token: tok, body: newDevice(t, "a").enrollBody("x"), want: 401})
	}
	// Token routes are not on the enrollment listener, with a genuine build certificate.
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	for _, p := range []string{"/v1/tokens", "/v1/revocations", "/v1/fusion-sets/bank-prod/builds", "/v1/events"} {
		req := newRequest(t, e.enroll.URL, "POST", p, e.token[auth.ScopeAdmin], `{}`, "Content-Type", "application/json")
		if resp, data := roundTripWith(t, e.enrollClient(bc), req); resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s on the enrollment listener: %d %s", p, resp.StatusCode, data)
		}
	}
}

func TestAttackAddressLimitSpoofing(t *testing.T) {
	e := startEnroll(t, strings.Replace(enrollDoc, "max_per_address: 100", "max_per_address: 2", 1))
	bcs := []*tls.Certificate{buildTLS(t, e.issue(t, "build-1", nil).Bundle), buildTLS(t, e.issue(t, "build-2", nil).Bundle),
		buildTLS(t, e.issue(t, "build-3", nil).Bundle)}
	for i, bc := range bcs {
		d := newDevice(t, fmt.Sprintf("addr-%d", i))
		req := newRequest(t, e.enroll.URL, "POST", enrollPath, "", d.enrollBody(fmt.Sprintf("device-%d", i)), "Content-Type", "application/json",
			"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i), "X-Real-IP", fmt.Sprintf("198.51.100.%d", i), "Forwarded", fmt.Sprintf("for=192.0.2.%d", i))
		resp, data := roundTripWith(t, e.enrollClient(bc), req)
		want := http.StatusCreated
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want || (want == 429 && !strings.Contains(string(data), "max_per_address")) {
			t.Errorf("enrollment %d from one address with forged forwarding headers: %d %s, want %d", i, resp.StatusCode, data, want)
		}
	}
}

// TestAttackEnrollAddressLimit: one address flooding the enrollment
// listener gets 429 with Retry-After before any certificate work is done,
// and the token routes do not share its budget.
func TestAttackEnrollAddressLimit(t *testing.T) {
	e := startAPI(t, envOptions{scopes: bankProdScopes, clock: frozenClock(), addressLimiter: auth.NewLimiter(0.001, 2)})
	e.publish(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	for i := range 2 {
		if code, data := attackPost(t, e, bc, enrollPath, newDevice(t, fmt.Sprintf("addr-%d", i)).enrollBody("d")); code != http.StatusCreated {
			t.Fatalf("enrollment %d within the address budget: %d %s", i, code, data)
		}
	}
	req := newRequest(t, e.enroll.URL, "POST", enrollPath, "", newDevice(t, "addr-3").enrollBody("d"), "Content-Type", "application/json")
	resp, data := roundTripWith(t, e.enrollClient(bc), req)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(data), "rate-limited") || !strings.Contains(string(data), "address") {
		t.Fatalf("past the address budget: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}
	// The refused request reached no enrollment: the build certificate and
	// two install certificates exist.
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	e.json(t, "GET", "/v1/certificates?fusionSet=bank-prod", e.token[auth.ScopeRead], nil, http.StatusOK, &page)
	if len(page.Items) != 3 {
		t.Errorf("%d certificates after the flood, want 3 (the build and two installs)", len(page.Items))
	}
}

// TestAttackInstallIDHeldByAnotherKey: an install id is bound to the key
// of its live certificate; a second device naming it is refused, so it
// cannot take over (or be blamed for) another install's identity.
func TestAttackInstallIDHeldByAnotherKey(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	if code, data := attackPost(t, e, bc, enrollPath, newDevice(t, "shared-id").enrollBody("a")); code != http.StatusCreated {
		t.Fatalf("first enrollment: %d %s", code, data)
	}
	code, data := attackPost(t, e, bc, enrollPath, newDevice(t, "shared-id").enrollBody("b"))
	if code != http.StatusConflict || !strings.Contains(string(data), "urn:mcc:problem:conflict") {
		t.Fatalf("a second key for a live install id: %d %s, want 409 conflict", code, data)
	}
}

// TestAttackDeviceValuesInvisibleText: device context values reach the
// events, the console and operators' terminals, so format characters
// that reorder or hide text are refused with the field.
func TestAttackDeviceValuesInvisibleText(t *testing.T) {
	e := startEnroll(t, enrollDoc)
	bc := buildTLS(t, e.issue(t, "build-4711", nil).Bundle)
	for name, v := range map[string]string{"right-to-left override": "abc\u202edcb", "zero width space": "dev\u200bice", "line separator": "a\u2028b", "escape": "a\x1b[31mb", "newline": "a\nb"} {
		code, data := attackPost(t, e, bc, enrollPath, newDevice(t, "text-"+strings.ReplaceAll(name, " ", "-")).enrollBody(v))
		if code != http.StatusUnprocessableEntity || !strings.Contains(string(data), "device.deviceID") {
			t.Errorf("a device id with a %s: %d %s, want 422 naming device.deviceID", name, code, data)
		}
	}
}

// TestAttackInstallsDoNotOutliveTheirBuild: an install certificate never
// ends after the build certificate it enrolled with, whatever the set's
// install lifetime, so a build's expiry retires its installs too.
func TestAttackInstallsDoNotOutliveTheirBuild(t *testing.T) {
	e := startEnroll(t, enrollDoc) // installs live 2 h
	b := e.issue(t, "build-short", map[string]any{"validFor": "3h"})
	bc := buildTLS(t, b.Bundle)
	d := newDevice(t, "short-lived")
	d.take(t, e.send(t, contractReq{method: "POST", path: enrollPath, cert: bc, body: d.enrollBody("x"), want: 201}))
	buildEnd := bc.Leaf.NotAfter
	e.clock.Add(70 * time.Minute) // past halfway of the install certificate, 1 h 50 min before the build ends
	code, data := attackPost(t, e, d.cert, attackRenewPath, `{}`)
	if code != http.StatusCreated {
		t.Fatalf("renewing: %d %s", code, data)
	}
	d.take(t, contractResp{status: code, body: data})
	if got := d.cert.Leaf.NotAfter; got.After(buildEnd) {
		t.Fatalf("the renewed install certificate ends %s, after its build certificate (%s)", got, buildEnd)
	}
	if !d.cert.Leaf.NotAfter.Equal(buildEnd) {
		t.Errorf("the renewed install certificate ends %s, want the build's end %s (a 2 h lifetime would pass it)", d.cert.Leaf.NotAfter, buildEnd)
	}
}
