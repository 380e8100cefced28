package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/threat/redisstream/redisstreamtest"
	"github.com/mccgate/mcc/threat/webhook/webhooktest"
)

// TestAuthzSinksFromFusionFile: `mcc authz` builds its sinks from the
// fusion file's sinks section, the keys of Caddy's sink option. Checks
// sent over real gRPC, as Envoy sends them, produce events that reach a
// real HTTP receiver and a real redis-server's stream. Events made while
// the receiver's listener is closed wait in the spool (a path relative to
// the fusion file) and arrive once it listens again, in the stream's order,
// none lost, each id with one content. The webhook token ({file.PATH}) and
// the Redis password ({env.NAME}) are used, and are in neither the log nor
// the admin /status.
func TestAuthzSinksFromFusionFile(t *testing.T) {
	rs := redistest.New(t)
	password := rs.RequirePassword()
	t.Setenv("MCC_TEST_AUTHZ_STREAM_PASSWORD", password)
	const token = "authz-wh-s3cret-41b7"
	tokenFile := filepath.Join(t.TempDir(), "webhook-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rcv := webhooktest.NewReceiver(t)
	rcv.RequireHeader("Authorization", "Bearer "+token)
	const stream = "mcc:authz-test"
	sinks := fmt.Sprintf(`sinks:
  - type: webhook
    url: %s
    spool_dir: spool
    header:
      Authorization: "Bearer {file.%s}"
    batch_size: 2
    min_backoff: 20ms
    max_backoff: 200ms
  - type: redis_stream
    url: "redis://:{env.MCC_TEST_AUTHZ_STREAM_PASSWORD}@%s/0"
    stream: %s
    max_len: 1000
`, rcv.URL(), tokenFile, rs.Addr(), stream)
	dir, cfgPath, adminToken, _ := authzSetup(t, sinks)

	logs, serving := startAuthz(t, "--config", cfgPath, "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--admin-token-file", adminToken)
	check := checkWithoutCertificate(t, serving["grpc"].(string))

	for i := 0; i < 3; i++ {
		check()
	}
	rcv.WaitDistinct(3)

	rcv.Stop()
	for i := 0; i < 5; i++ {
		check()
	}
	redisstreamtest.IDs(t, rs.Addr(), password, stream, 8) // all eight were made
	segs, _ := filepath.Glob(filepath.Join(dir, "spool", "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no spool segment next to the fusion file while the receiver is down")
	}
	if n := rcv.Distinct(); n != 3 {
		t.Fatalf("receiver has %d events while down, want 3", n)
	}

	rcv.Start()
	rcv.WaitDistinct(8)
	webhooktest.CheckFirstArrivals(t, rcv.Arrivals(), redisstreamtest.IDs(t, rs.Addr(), password, stream, 8))
	if errs := rcv.Errs(); len(errs) > 0 {
		t.Fatalf("receiver refused POSTs (wrong or missing Authorization?): %v", errs)
	}

	status := adminStatus(t, serving["admin"].(string))
	for name, secret := range map[string]string{"webhook token": token, "Redis password": password} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows the %s", name)
		}
		if strings.Contains(status, secret) {
			t.Errorf("/status shows the %s", name)
		}
		for _, a := range rcv.Arrivals() {
			if strings.Contains(a.Raw, secret) {
				t.Fatalf("an event holds the %s", name)
			}
		}
	}
}

// checkWithoutCertificate returns a function that sends the authz at addr
// one Check without a client certificate, as Envoy does for such a
// request: one event each.
func checkWithoutCertificate(t *testing.T, addr string) func() {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := authv3.NewAuthorizationClient(cc)
	return func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.Check(ctx, envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", SourceAddr: "198.51.100.7:1000", Host: "api.bank.example", Method: "GET", Path: "/",
		})); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
}

// adminStatus is the admin /status body, with the test's admin token.
func adminStatus(t *testing.T, addr string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/status", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/status: %d %s", resp.StatusCode, body)
	}
	return string(body)
}
