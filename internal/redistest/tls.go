package redistest

import (
	"crypto/tls"
	"os"
	"path/filepath"

	"github.com/mccgate/mcc/internal/testpki"
)

// Files of a NewTLS server, in its directory.
const (
	caCertFile     = "ca.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
)

// writeTLSFiles makes a CA and a server certificate for 127.0.0.1 with
// internal/testpki, writes them into dir for redis-server (the key 0600),
// and returns a client configuration that trusts the CA.
func writeTLSFiles(dir string) (*tls.Config, error) {
	ca, err := testpki.NewCAIn(filepath.Join(dir, "pki"), "redistest CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.IssueControl(testpki.ServerRequest("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{caCertFile, ca.CertPEM, 0o644},
		{serverCertFile, server.CertPEM, 0o644},
		{serverKeyFile, server.KeyPEM, 0o600},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return &tls.Config{RootCAs: testpki.Pool(ca), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}
