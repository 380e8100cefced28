// Package xdstest holds helpers for tests of the control plane and of the
// parts that reuse its output (envoyext, examples): a throw-away PKI, a
// fusion set file writer, and xDS clients that subscribe the way Envoy does
// over a real gRPC stream, in state-of-the-world and delta flavours.
package xdstest

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testpki"
)

// CA is a test certificate authority: the project's one test PKI
// (internal/testpki, built on package pki) under the names xds tests use.
type CA struct{ *testpki.CA }

// NewCA creates a CA named cn, valid for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	return &CA{testpki.NewCA(t, cn)}
}

// Leaf is an issued certificate with its key (SPKIPin gives its pin).
type Leaf = testpki.Leaf

// IssueServer issues a TLS server certificate for dnsNames.
func (ca *CA) IssueServer(t testing.TB, dnsNames ...string) *Leaf {
	t.Helper()
	return ca.Server(t, dnsNames...)
}

// IssueClient issues an app client certificate carrying the identity URI SAN
// "mcc://<setID>/<appID>" and build metadata.
func (ca *CA) IssueClient(t testing.TB, setID, appID string) *Leaf {
	t.Helper()
	return ca.Client(t, setID, appID)
}

// IssuePeer issues a control-channel client certificate (an Envoy talking
// to mcc xds or mcc authz) with common name cn and the given URI SANs, such
// as "spiffe://mcc/envoy/edge".
func (ca *CA) IssuePeer(t testing.TB, cn string, uris ...string) *Leaf {
	t.Helper()
	return ca.Peer(t, cn, uris...)
}

// CRL returns a PEM CRL signed by ca revoking the given leaves.
func (ca *CA) CRL(t testing.TB, revoked ...*Leaf) []byte {
	t.Helper()
	return ca.CRLUntil(t, time.Now().Add(24*time.Hour), revoked...)
}

// CRLUntil is CRL with the given nextUpdate (in the past: an expired CRL).
func (ca *CA) CRLUntil(t testing.TB, nextUpdate time.Time, revoked ...*Leaf) []byte {
	t.Helper()
	var certs []*x509.Certificate
	for _, l := range revoked {
		certs = append(certs, l.Cert)
	}
	return ca.CA.CRL(t, nextUpdate, certs...)
}

// WriteFile writes data to dir/name (0600) and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
