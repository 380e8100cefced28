package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestControlCertShapeAuditAndRevocation(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	cc, err := ca.IssueControlCert(ControlRequest{Name: "mcc-authz", DNS: []string{"Authz.Internal"}, IPs: []net.IP{net.ParseIP("::1")}, Usage: ControlServer})
	if err != nil {
		t.Fatal(err)
	}
	c := cc.Cert
	if c.IsCA || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || c.KeyUsage != x509.KeyUsageDigitalSignature ||
		c.PublicKeyAlgorithm != x509.ECDSA || c.DNSNames[0] != "authz.internal" || !c.IPAddresses[0].Equal(net.IPv6loopback) {
		t.Errorf("certificate: %+v", c)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < DefaultControlValidity || d > DefaultControlValidity+10*time.Minute {
		t.Errorf("validity %s, want the 90-day default", d)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf(ca.Cert), DNSName: "authz.internal", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("does not verify as a server certificate: %v", err)
	}
	// Its serial is known to revoke (no --force needed).
	r, err := ca.Revoke(RevokeRequest{Serial: c.SerialNumber})
	if err != nil || !r.Known {
		t.Fatalf("revoking a control certificate: %+v %v", r, err)
	}
	sum, err := VerifyAudit(ca.Path(AuditFile), ca.Cert)
	if err != nil || sum.Entries != 3 {
		t.Fatalf("audit: %+v %v", sum, err)
	}
	entries, _ := ReadAudit(ca.Path(AuditFile))
	if entries[1].Action != AuditIssueControl || entries[1].Serial != FormatSerial(c.SerialNumber) ||
		entries[1].Detail != "server cn=mcc-authz dns=authz.internal ip=::1" {
		t.Errorf("audit entry %+v", entries[1])
	}
}

func TestControlCertRefusals(t *testing.T) {
	ca := newTestCA(t, CAOptions{ValidFor: 30 * 24 * time.Hour})
	for _, tc := range []struct {
		req  ControlRequest
		want string
	}{
		{ControlRequest{Name: "x", Usage: ControlServer}, "needs at least one DNS name or IP"},
		{ControlRequest{Name: "", DNS: []string{"a"}, Usage: ControlServer}, "name is empty"},
		{ControlRequest{Name: "x", DNS: []string{"a"}, Usage: "both"}, "usage"},
		{ControlRequest{Name: "x\n", DNS: []string{"a"}, Usage: ControlServer}, "control character"},
		{ControlRequest{Name: strings.Repeat("n", 65), DNS: []string{"a"}, Usage: ControlServer}, "longer than 64"},
		{ControlRequest{Name: "x", DNS: []string{"a..b"}, Usage: ControlServer}, "not a host name"},
		{ControlRequest{Name: "x", URIs: []string{"MCC://set/app"}, Usage: ControlClient}, "app identity scheme"},
		{ControlRequest{Name: "x", URIs: []string{"relative/path"}, Usage: ControlClient}, "absolute URI"},
		{ControlRequest{Name: "x", DNS: []string{"a"}, Usage: ControlServer, ValidFor: 60 * 24 * time.Hour}, "after the CA expires"},
	} {
		if _, err := ca.IssueControlCert(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.req, err, tc.want)
		}
	}
	if n, _ := ReadAudit(ca.Path(AuditFile)); len(n) != 1 {
		t.Errorf("refused requests were audited: %d entries", len(n))
	}
	// An unknown serial still needs Force.
	if _, err := ca.Revoke(RevokeRequest{Serial: ca.Cert.SerialNumber}); !errors.Is(err, ErrUnknownSerial) {
		t.Errorf("unknown serial: %v", err)
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}
