package envoyext

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// BenchmarkCheck is the in-process cost of one Check with a valid
// certificate (cached verdict), without gRPC.
func BenchmarkCheck(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	cfg, err := fusion.LoadFile(c.SetFile)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(Options{Config: cfg, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		chain bool
	}{{"leaf", false}, {"xfcc-chain", true}} {
		b.Run(bc.name, func(b *testing.B) {
			req := corpusCheck(c, c.Case(b, "valid"), 0, bc.chain)
			ctx := context.Background()
			if svc.Check(ctx, req) != okClean {
				b.Fatal("valid certificate not allowed")
			}
			b.ReportAllocs()
			for b.Loop() {
				svc.Check(ctx, req)
			}
		})
	}
}

// BenchmarkCheckGRPC is one Check over loopback gRPC, the way Envoy calls
// it: one caller at a time (round-trip latency) and GOMAXPROCS callers
// (throughput).
func BenchmarkCheckGRPC(b *testing.B) {
	c := fusiontest.NewCorpus(b, "bank-prod", "com.example.bank")
	cfg, err := fusion.LoadFile(c.SetFile)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(Options{Config: cfg, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, ServeOptions{GRPC: lis}) }()
	defer func() { cancel(); <-done }()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	req := corpusCheck(c, c.Case(b, "valid"), 0, true)
	if resp, err := client.Check(ctx, req); err != nil || resp.GetStatus().GetCode() != 0 {
		b.Fatalf("valid certificate: %v %v", resp.GetStatus(), err)
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := client.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
