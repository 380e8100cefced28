package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mccgate/mcc/internal/pgtest"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// TestIdemTwoInstancesOnPostgres runs two API instances on one real
// PostgreSQL database (one KEK, as --kek-file requires): a key sent to
// both at once issues one certificate; a certificate issued on one is
// revoked on the other; concurrent revocations on both give every CRL
// its own number and the last CRL every revocation.
func TestIdemTwoInstancesOnPostgres(t *testing.T) {
	ctx := context.Background()
	u := pgtest.Start(t).NewDatabase(t)
	kek, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	clock := frozenClock()
	var envs []*apiEnv
	var ciTokens map[auth.Scope]string // nil: the first instance makes them
	for range 2 {
		db, err := store.Open(ctx, store.Options{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		// One CI token per scope, two instances behind a load balancer.
		env := startAPI(t, envOptions{db: db, kek: kek, clock: clock, scopes: bankProdScopes, tokens: ciTokens})
		ciTokens = env.token
		envs = append(envs, env)
	}
	a, b := envs[0], envs[1]
	a.publish(t, bankProdDoc)

	serials := idemRace(t, envs, 6, `{"appId":"com.example.bank","buildId":"b-lb"}`, "lb-retry")
	body := `{"appId":"com.example.bank","buildId":"b-lb"}`
	// A late retry on either instance is the same build.
	resp, data := b.do(t, "POST", "/v1/fusion-sets/bank-prod/builds", b.token[auth.ScopeIssue], body,
		"Content-Type", "application/json", "Idempotency-Key", "lb-retry")
	var replay issuedBuild
	json.Unmarshal(data, &replay)
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" || len(serials) > 1 || (len(serials) == 1 && !serials[replay.Certificate.Serial]) {
		t.Fatalf("replay %d %q serial %s; answered serials %v", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), replay.Certificate.Serial, serials)
	}

	// Issue on A, revoke on B, concurrently: CRL numbers never collide.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var todo []string
	for i := range 8 {
		todo = append(todo, a.issue(t, fmt.Sprintf("b%d", i), nil).Certificate.Serial)
	}
	numbers := map[int64]bool{}
	for i, s := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res revokeResult
			envs[i%2].json(t, "POST", "/v1/revocations", envs[i%2].token[auth.ScopeRevoke], map[string]any{"serial": s}, 200, &res)
			mu.Lock()
			defer mu.Unlock()
			if numbers[res.CRLs[0].Number] {
				t.Errorf("CRL number %d signed twice", res.CRLs[0].Number)
			}
			numbers[res.CRLs[0].Number] = true
		}()
	}
	wg.Wait()
	crl, _ := crlFetch(t, a)
	if len(crl.RevokedCertificateEntries) != len(todo) || len(numbers) != len(todo) {
		t.Fatalf("final CRL %d lists %d of %d revocations; %d numbers", crl.Number, len(crl.RevokedCertificateEntries), len(todo), len(numbers))
	}
	var n int
	if err := a.db.QueryRow(ctx, `SELECT COUNT(*) FROM certificates`).Scan(&n); err != nil || n != len(todo)+1 {
		t.Fatalf("%d certificates, %v", n, err)
	}
}
