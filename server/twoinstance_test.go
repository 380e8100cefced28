package server_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mccgate/mcc/internal/pgtest"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/client"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// twoSet is the fusion set both instances serve; its CA is the server's.
const twoSet = "bank-prod"

const twoSetYAML = `fusion_sets:
  - id: bank-prod
    app_id: com.bank.app
    mode: defense
`

// twoInstance is one mcc server on the shared database, behind a real
// HTTP server, with a client holding the CI token.
type twoInstance struct {
	name string
	srv  *server.Server
	http *httptest.Server
	ci   *client.Client
}

// TestTwoInstancesOnePostgres runs two mcc servers on one real PostgreSQL
// database, as behind a load balancer: a build issued on one is listed and
// revoked on the other, concurrent issuance on both never repeats a
// serial, an idempotency key is honoured across both (also when the same
// request reaches both at once), CRL numbers only go up, and the audit
// chain they both append to stays one chain. Then a backup taken while
// one instance issues restores into SQLite and serves the same state.
func TestTwoInstancesOnePostgres(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.Start(t)
	dbURL := pg.NewDatabase(t)
	kek := filepath.Join(t.TempDir(), "kek.key")
	if _, err := keys.LoadOrCreate(kek); err != nil {
		t.Fatal(err)
	}
	logCore, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(logCore)

	open := func(name string) *server.Server {
		s, err := server.Open(ctx, server.Config{DatabaseURL: dbURL, KEKFile: kek, RateLimit: -1, Logger: log.Named(name)})
		if err != nil {
			t.Fatalf("instance %s: %v", name, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open("a"), open("b")
	admin, _, err := a.Tokens().Create(ctx, "admin", []auth.Scope{auth.ScopeAdmin}, 0, "cli:test")
	if err != nil {
		t.Fatal(err)
	}
	// One CI token, created on b, used on both: idempotency keys are per token.
	ciSecret, _, err := b.Tokens().Create(ctx, "ci", []auth.Scope{auth.ScopeIssue, auth.ScopeRead, auth.ScopeRevoke}, 0, "cli:test")
	if err != nil {
		t.Fatal(err)
	}
	var inst []*twoInstance
	for i, s := range []*server.Server{a, b} {
		name := []string{"a", "b"}[i]
		hs := httptest.NewServer(s.Handler())
		t.Cleanup(hs.Close)
		c, err := client.New(client.Options{Server: hs.URL, Token: ciSecret, Retries: -1})
		if err != nil {
			t.Fatal(err)
		}
		inst = append(inst, &twoInstance{name: name, srv: s, http: hs, ci: c})
	}
	ia, ib := inst[0], inst[1]

	// Publish on one, read on the other.
	resp, body := twoDo(t, ia, http.MethodPut, "/v1/fusion-sets/"+twoSet, admin, twoSetYAML, "Content-Type", "application/yaml", "If-None-Match", "*")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish on %s: %d %s", ia.name, resp.StatusCode, body)
	}
	etag := resp.Header.Get("ETag")
	resp, body = twoDo(t, ib, http.MethodGet, "/v1/fusion-sets/"+twoSet, admin, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != etag {
		t.Fatalf("get on %s: %d ETag %q (want %q) %s", ib.name, resp.StatusCode, resp.Header.Get("ETag"), etag, body)
	}

	// Concurrent issuance on both instances: no serial twice.
	const builds = 12
	serials := make([]string, builds)
	var wg sync.WaitGroup
	errs := make(chan error, builds)
	for i := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := inst[i%2]
			got, err := in.ci.IssueBuild(ctx, twoSet, client.BuildRequest{AppID: "com.bank.app", BuildID: fmt.Sprintf("build-%d", i)}, "")
			if err != nil {
				errs <- fmt.Errorf("issue on %s: %w", in.name, err)
				return
			}
			serials[i] = got.Certificate.Serial
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range serials {
		if s == "" || seen[s] {
			t.Fatalf("serial %q issued twice or empty: %v", s, serials)
		}
		seen[s] = true
	}
	// Listed on each instance, page by page.
	for _, in := range inst {
		listed := twoListSerials(t, in, client.CertificateFilter{FusionSet: twoSet, Limit: 5})
		for s := range seen {
			if !listed[s] {
				t.Fatalf("%s does not list %s", in.name, s)
			}
		}
	}

	// An idempotency key: issued on a, replayed on b, refused with
	// another body on b.
	req := client.BuildRequest{AppID: "com.bank.app", BuildID: "retried"}
	first, err := ia.ci.IssueBuild(ctx, twoSet, req, "pipeline-run-42")
	if err != nil {
		t.Fatal(err)
	}
	again, err := ib.ci.IssueBuild(ctx, twoSet, req, "pipeline-run-42")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || first.Replayed || again.Certificate.Serial != first.Certificate.Serial ||
		again.Bundle.SHA256 != first.Bundle.SHA256 || again.Bundle.Password != first.Bundle.Password {
		t.Fatalf("retry on %s: replayed %v, serial %s (first %s)", ib.name, again.Replayed, again.Certificate.Serial, first.Certificate.Serial)
	}
	other := req
	other.BuildID = "another"
	if _, err := ib.ci.IssueBuild(ctx, twoSet, other, "pipeline-run-42"); !client.IsProblem(err, "idempotency-key-reused") {
		t.Fatalf("same key, other body on %s: %v", ib.name, err)
	}

	// The same keyed request reaching both instances at once: one
	// certificate; every answer is that build or "still running".
	race := client.BuildRequest{AppID: "com.bank.app", BuildID: "raced"}
	const racers = 6
	raced := make(chan string, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := inst[i%2].ci.IssueBuild(ctx, twoSet, race, "pipeline-run-43")
			switch {
			case err == nil:
				raced <- got.Certificate.Serial
			case client.IsProblem(err, "conflict"):
			default:
				t.Errorf("raced issue on %s: %v", inst[i%2].name, err)
			}
		}()
	}
	wg.Wait()
	close(raced)
	var racedSerial string
	for s := range raced {
		if racedSerial != "" && s != racedSerial {
			t.Fatalf("one idempotency key, two certificates: %s and %s", racedSerial, s)
		}
		racedSerial = s
	}
	if racedSerial == "" {
		t.Fatal("no raced request succeeded")
	}
	if n := len(twoListSerials(t, ib, client.CertificateFilter{FusionSet: twoSet, BuildID: "raced"})); n != 1 {
		t.Fatalf("the raced build has %d certificates, want 1", n)
	}

	// Revoke on b what a issued, then on a what b issued: both see both,
	// and the CRL number goes up whichever instance signs.
	var lastNumber int64
	for i, step := range []struct {
		on     *twoInstance
		serial string
	}{{ib, serials[0]}, {ia, serials[1]}, {ib, first.Certificate.Serial}} {
		res, err := step.on.ci.Revoke(ctx, client.RevokeRequest{Serial: step.serial, Reason: "keyCompromise"})
		if err != nil {
			t.Fatalf("revoke %s on %s: %v", step.serial, step.on.name, err)
		}
		if len(res.Revoked) != 1 || res.Revoked[0] != step.serial || len(res.CRLs) != 1 {
			t.Fatalf("revoke on %s: %+v", step.on.name, res)
		}
		if res.CRLs[0].Number <= lastNumber {
			t.Fatalf("revocation %d: CRL number %d after %d", i, res.CRLs[0].Number, lastNumber)
		}
		lastNumber = res.CRLs[0].Number
		for _, in := range inst {
			got, err := in.ci.Certificate(ctx, step.serial)
			if err != nil || got.Status != "revoked" {
				t.Fatalf("%s sees %s as %v (%v)", in.name, step.serial, got, err)
			}
			crl := twoCRL(t, in)
			if crl.Number.Int64() != lastNumber || !twoCRLHas(crl, step.serial) {
				t.Fatalf("%s serves CRL %v without %s (want number %d)", in.name, crl.Number, step.serial, lastNumber)
			}
		}
	}
	// Already revoked, asked on the other instance.
	res, err := ia.ci.Revoke(ctx, client.RevokeRequest{Serial: serials[0]})
	if err != nil || len(res.AlreadyRevoked) != 1 || len(res.Revoked) != 0 {
		t.Fatalf("second revocation on %s: %+v %v", ia.name, res, err)
	}

	// One audit chain, appended by both.
	var heads []string
	for _, in := range inst {
		resp, body := twoDo(t, in, http.MethodGet, "/v1/audit/verify", admin, "")
		var v struct {
			Valid   bool   `json:"valid"`
			Entries int64  `json:"entries"`
			Head    string `json:"head"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil || !v.Valid || v.Entries < builds+4 {
			t.Fatalf("audit verify on %s: %d %s", in.name, resp.StatusCode, body)
		}
		heads = append(heads, v.Head)
	}
	if heads[0] != heads[1] {
		t.Fatalf("the instances see two audit heads: %v", heads)
	}
	n, _, err := a.DB().VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d builds, %d audit entries, CRL number %d", builds+2, n, lastNumber)

	// A backup taken from a while b keeps issuing restores into a new
	// SQLite data directory, where a server (same KEK) serves what was
	// there and goes on issuing with the same CA.
	before := twoListSerials(t, ib, client.CertificateFilter{FusionSet: twoSet})
	stop := make(chan struct{})
	busy := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				busy <- nil
				return
			default:
			}
			if _, err := ib.ci.IssueBuild(ctx, twoSet, client.BuildRequest{AppID: "com.bank.app", BuildID: fmt.Sprintf("during-%d", i)}, ""); err != nil {
				busy <- err
				return
			}
		}
	}()
	backup := filepath.Join(t.TempDir(), "mcc-backup.db")
	berr := a.DB().Backup(ctx, backup)
	close(stop)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	if berr != nil {
		t.Fatal(berr)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := store.Restore(ctx, backup, store.Options{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	r, err := server.Open(ctx, server.Config{DataDir: dir, KEKFile: kek, RateLimit: -1, Logger: log.Named("restored")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	hs := httptest.NewServer(r.Handler())
	t.Cleanup(hs.Close)
	rc, err := client.New(client.Options{Server: hs.URL, Token: ciSecret, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	ir := &twoInstance{name: "restored", srv: r, http: hs, ci: rc}
	restored := twoListSerials(t, ir, client.CertificateFilter{FusionSet: twoSet})
	after := twoListSerials(t, ib, client.CertificateFilter{FusionSet: twoSet})
	for s := range before {
		if !restored[s] {
			t.Fatalf("the restored server does not list %s", s)
		}
	}
	for s := range restored {
		if !after[s] {
			t.Fatalf("the restored server lists %s, which PostgreSQL does not have", s)
		}
	}
	if got, err := rc.Certificate(ctx, serials[0]); err != nil || got.Status != "revoked" {
		t.Fatalf("restored %s: %+v %v", serials[0], got, err)
	}
	if crl, live := twoCRL(t, ir), twoCRL(t, ib); crl.Number.Cmp(live.Number) != 0 || !twoCRLHas(crl, serials[0]) {
		t.Fatalf("restored CRL number %v, PostgreSQL's %v", crl.Number, live.Number)
	}
	if _, err := rc.IssueBuild(ctx, twoSet, client.BuildRequest{AppID: "com.bank.app", BuildID: "after-restore"}, ""); err != nil {
		t.Fatalf("issue on the restored server: %v", err)
	}
	t.Logf("backup: %d certificates before, %d restored, %d on PostgreSQL after", len(before), len(restored), len(after))

	// Nothing secret in any instance's log.
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the secret check below would prove nothing")
	}
	var logged strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&logged, "%s %s %v\n", e.LoggerName, e.Message, e.ContextMap())
	}
	for _, secret := range []string{pg.Password(), admin, ciSecret, first.Bundle.Password} {
		if strings.Contains(logged.String(), secret) {
			t.Fatalf("a secret is in the log:\n%s", logged.String())
		}
	}
}

// twoListSerials lists every page of certificates matching f.
func twoListSerials(t *testing.T, in *twoInstance, f client.CertificateFilter) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for page := 0; ; page++ {
		p, err := in.ci.Certificates(context.Background(), f)
		if err != nil {
			t.Fatalf("list on %s: %v", in.name, err)
		}
		for _, c := range p.Items {
			if out[c.Serial] {
				t.Fatalf("list on %s: %s on two pages", in.name, c.Serial)
			}
			out[c.Serial] = true
		}
		if p.NextCursor == "" {
			return out
		}
		if page > 100 {
			t.Fatalf("list on %s does not end", in.name)
		}
		f.Cursor = p.NextCursor
	}
}

// twoCRL fetches and parses the set's CRL from an instance.
func twoCRL(t *testing.T, in *twoInstance) *x509.RevocationList {
	t.Helper()
	resp, body := twoDo(t, in, http.MethodGet, "/v1/fusion-sets/"+twoSet+"/crl.der", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CRL on %s: %d %s", in.name, resp.StatusCode, body)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatalf("CRL on %s: %v", in.name, err)
	}
	return crl
}

func twoCRLHas(crl *x509.RevocationList, serial string) bool {
	want, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		return false
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(want) == 0 {
			return true
		}
	}
	return false
}

// twoDo makes one raw HTTP request (routes the client has no call for);
// headers are name, value pairs. No answer may be a 5xx.
func twoDo(t *testing.T, in *twoInstance, method, path, token, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, in.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := in.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s on %s: %d %s", method, path, in.name, resp.StatusCode, data)
	}
	return resp, data
}
