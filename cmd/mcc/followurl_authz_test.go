package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/pki"
)

// TestFollowURLAuthz: `mcc authz` follows a fusion set's revocation URL: a
// certificate revoked in the served CRL is denied through a real gRPC Check
// within the interval, and stays denied when the URL's server goes away.
func TestFollowURLAuthz(t *testing.T) {
	var mu sync.Mutex
	var served []byte
	crlSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(served)
	}))
	defer crlSrv.Close()
	const interval = time.Second
	dir, cfgPath, _, leaf := authzSetup(t, "    revocation:\n      urls: [\""+crlSrv.URL+"/v1/fusion-sets/bank/crl.pem\"]\n      url_interval: 1s\n")
	ca, err := pki.LoadCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(number int64, revoked ...*big.Int) {
		now := time.Now()
		var entries []x509.RevocationListEntry
		for _, s := range revoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number),
			ThisUpdate: now.Add(-time.Minute), NextUpdate: now.AddDate(0, 0, 7), RevokedCertificateEntries: entries}, ca.Cert, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		served = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
		mu.Unlock()
	}
	serve(1)

	_, serving := startAuthz(t, "--config", cfgPath, "--listen", "127.0.0.1:0", "--watch-interval", "50ms")
	check := followURLCheck(t, serving, leaf)
	if c := check(); c != codes.OK {
		t.Fatalf("before the revocation: %v", c)
	}

	serve(2, cert.SerialNumber)
	waitDenied(t, check, interval+3*time.Second, "the CRL was served")

	crlSrv.Close()
	time.Sleep(2 * interval)
	if c := check(); c != codes.PermissionDenied {
		t.Fatalf("with the server gone: %v, want the last good CRL in force", c)
	}
}

// followURLCheck returns a real gRPC Check of leaf for fusion set "bank"
// against the `mcc authz` whose serving log line is serving.
func followURLCheck(t *testing.T, serving map[string]any, leaf []byte) func() codes.Code {
	t.Helper()
	grpcAddr, _ := serving["grpc"].(string)
	cc, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := authv3.NewAuthorizationClient(cc)
	return func() codes.Code {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, envoytest.CheckRequest(envoytest.Check{
			FusionSet: "bank", LeafDER: leaf, SourceAddr: "127.0.0.1:1000", Host: "api.bank.example", Method: "GET", Path: "/",
		}))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return codes.Code(resp.GetStatus().GetCode())
	}
}

// waitDenied polls check until it denies, failing after limit; since names
// what the time is counted from.
func waitDenied(t *testing.T, check func() codes.Code, limit time.Duration, since string) {
	t.Helper()
	start := time.Now()
	for check() != codes.PermissionDenied {
		if time.Since(start) > limit {
			t.Fatalf("mcc authz does not deny the certificate within %s after %s", limit, since)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("mcc authz denies the certificate %s after %s", time.Since(start).Round(time.Millisecond), since)
}
