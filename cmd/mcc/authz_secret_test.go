package main

import (
	"context"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"encoding/json"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/internal/redistest"
)

// TestRunAuthzStorePlaceholder: the fusion file's `store:` takes the Redis
// password from {file.PATH}; mcc authz reaches a real redis-server that
// refuses any other password, and neither its log nor its admin /status
// shows the password.
func TestRunAuthzStorePlaceholder(t *testing.T) {
	rs := redistest.New(t)
	password := rs.RequirePassword()
	dir, cfgPath, tokenFile, _ := authzSetup(t, "")
	if err := os.WriteFile(filepath.Join(dir, "redis-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store := `store: "redis://:{file.redis-password}@` + rs.Addr() + `/0"` + "\n"
	if err := os.WriteFile(cfgPath, append([]byte(store), body...), 0o600); err != nil {
		t.Fatal(err)
	}

	logs, serving := startAuthz(t, "--config", cfgPath, "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--admin-token-file", tokenFile)
	adminAddr, _ := serving["admin"].(string)
	grpcAddr, _ := serving["grpc"].(string)

	// A request without a certificate is scored: a Redis round trip with
	// the expanded password.
	cc, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(cc).Check(cctx, envoytest.CheckRequest(envoytest.Check{
		FusionSet: "bank", SourceAddr: "198.51.100.7:1000", Host: "api.bank.example", Method: "GET", Path: "/",
	})); err != nil {
		t.Fatalf("Check: %v", err)
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/status", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	status, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/status: %d %s", resp.StatusCode, status)
	}
	// The store answered with the expanded password (redis-server refuses
	// any other since requirepass is set): the store is not failing.
	var st struct {
		Store struct {
			Name    string `json:"name"`
			Errors  int    `json:"errors"`
			Failing bool   `json:"failing"`
		} `json:"store"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, status)
	}
	if st.Store.Failing || st.Store.Errors != 0 || !strings.HasPrefix(st.Store.Name, "redis://") {
		t.Fatalf("/status store = %+v, want a working Redis store\n%s", st.Store, status)
	}
	for what, text := range map[string]string{"log": logs.String(), "/status": string(status)} {
		if strings.Contains(text, password) {
			t.Fatalf("the Redis password leaked into mcc authz's %s", what)
		}
	}
}
