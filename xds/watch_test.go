package xds_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/mccgate/mcc/xds/serve"
	"github.com/mccgate/mcc/xds/xdstest"
)

// withAppC is setFile with a third fusion set, app-c, whose CA is
// ca/app-c/ca.pem, on a route of its own.
var withAppC = strings.Replace(strings.Replace(setFile, "gateway:\n",
	"  - id: app-c\n    trusted_ca:\n      file: ca/app-c/ca.pem\n    app_id: com.example.c\n    mode: defense\ngateway:\n", 1),
	"  upstreams:\n", "        - host: c.example.com\n          fusion_set: app-c\n          upstream: api-b\n  upstreams:\n", 1)

// TestNewlyReferencedFilesAreWatched: a fusion set added by a reload brings
// its CA file into the watch; a later change of that file alone reaches the
// clients through notifications (the safety poll is longer than the test).
func TestNewlyReferencedFilesAreWatched(t *testing.T) {
	e := startServerPolling(t, time.Hour)
	c := e.client(t, true)
	e.write(t, "ca/app-c/ca.pem", xdstest.NewCA(t, "app-c CA").CertPEM)
	e.rename(t, "fusion-sets.yaml", []byte(withAppC))
	if _, err := c.Wait(ctxT(t), hasSecret("app-c", func(*tlsv3.CertificateValidationContext) bool { return true })); err != nil {
		t.Fatalf("new fusion set: %v", err)
	}
	next := xdstest.NewCA(t, "app-c CA 2")
	e.rename(t, "ca/app-c/ca.pem", next.CertPEM)
	if _, err := c.Wait(ctxT(t), hasSecret("app-c", func(vc *tlsv3.CertificateValidationContext) bool {
		return bytes.Equal(vc.GetTrustedCa().GetInlineBytes(), next.CertPEM)
	})); err != nil {
		t.Fatalf("new CA of the new fusion set: %v", err)
	}
}

// TestRefusedConfigurationIsRetried: a configuration that names a file that
// does not exist yet is refused, and loaded once the file appears, though
// no watched file changed (the file is in a directory nobody watched).
func TestRefusedConfigurationIsRetried(t *testing.T) {
	e := startServer(t)
	c := e.client(t, false)
	e.write(t, "fusion-sets.yaml", []byte(withAppC))
	waitStatus(t, e, func(s serve.Status) bool { return strings.Contains(s.Config.LastLoadError, "app-c") })
	e.write(t, "ca/app-c/ca.pem", xdstest.NewCA(t, "app-c CA").CertPEM)
	waitStatus(t, e, func(s serve.Status) bool { return s.Config.LastLoadError == "" })
	if _, err := c.Wait(ctxT(t), hasSecret("app-c", func(*tlsv3.CertificateValidationContext) bool { return true })); err != nil {
		t.Fatalf("configuration with the file that appeared: %v", err)
	}
}
