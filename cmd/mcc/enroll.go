package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	"github.com/mccgate/mcc/internal/secure"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/client"
)

// Files `mcc enroll` writes into --out.
const (
	installCertFile = "install.pem"
	installKeyFile  = "install.key"
)

// runEnroll plays the app's side of enrollment: it makes a P-256 key (a
// real app makes it in Android Keystore or the Secure Enclave), sends a
// CSR for it with the build bundle as client certificate, and writes the
// install certificate and key. With --renew it presents the install
// certificate instead and writes the next one.
func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("enroll", "enroll --server URL --fusion-set ID --bundle F.p12 --password-file F [--install-id ID] [--device-id ID] --out DIR\n"+
		"       mcc enroll --renew --server URL --fusion-set ID --out DIR [--new-key]", stderr)
	server := fs.String("server", "", "`URL` of mcc server's enrollment listener (https://, mcc server --enroll-listen)")
	serverCA := fs.String("server-ca", "", "PEM `file` of the CA that signs the server's TLS certificate (default: the system roots)")
	set := fs.String("fusion-set", "", "the app's fusion set")
	bundle := fs.String("bundle", "", "the build's PKCS#12 `file` (the bundle shipped in the app)")
	passwordFile := fs.String("password-file", "", "`file` holding the bundle's password")
	installID := fs.String("install-id", "", "the install's id (default: a new UUID)")
	deviceID := fs.String("device-id", "", "the device id the enrollment's events carry")
	out := fs.String("out", "", "`directory` for "+installCertFile+" and "+installKeyFile+" (0600)")
	renew := fs.Bool("renew", false, "renew the install certificate in --out with itself")
	newKey := fs.Bool("new-key", false, "with --renew: make a new key instead of keeping the current one")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "server", "fusion-set", "out"); err != nil {
		return err
	}
	if !strings.HasPrefix(*server, "https://") {
		return usageError(fs, "--server must be https://: the enrollment listener takes the app's certificate over TLS")
	}
	if *renew {
		if *bundle != "" || *passwordFile != "" || *installID != "" || *deviceID != "" {
			return usageError(fs, "--renew presents the install certificate in --out: --bundle, --password-file, --install-id and --device-id are for enrolling")
		}
	} else {
		if *newKey {
			return usageError(fs, "--new-key goes with --renew")
		}
		if err := requireFlags(fs, "bundle", "password-file"); err != nil {
			return err
		}
	}
	certPath, keyPath := filepath.Join(*out, installCertFile), filepath.Join(*out, installKeyFile)

	var present tls.Certificate
	if *renew {
		c, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return fmt.Errorf("the install certificate in --out: %w", err)
		}
		present = c
	} else {
		c, err := bundleCertificate(*bundle, *passwordFile)
		if err != nil {
			return err
		}
		present = c
	}
	cl, err := client.New(client.Options{Server: *server, CAFile: *serverCA, ClientCertificate: &present,
		UserAgent: "mcc-cli/" + strings.Fields(versionString())[1]})
	if err != nil {
		return err
	}

	var key *ecdsa.PrivateKey
	var csr []byte
	if !*renew || *newKey {
		if key, csr, err = client.NewDeviceKey(); err != nil {
			return err
		}
	} else {
		key = present.PrivateKey.(*ecdsa.PrivateKey)
	}
	var got *client.InstallCert
	if *renew {
		got, err = cl.Renew(ctx, *set, csr)
	} else {
		id := *installID
		if id == "" {
			id = uuid.NewString()
		}
		req := client.EnrollRequest{CSR: csr, InstallID: id}
		if *deviceID != "" {
			req.Device = map[string]string{"deviceID": *deviceID}
		}
		got, err = cl.Enroll(ctx, *set, req)
	}
	if err != nil {
		return err
	}
	cert, err := pki.ParseCertificatePEM([]byte(got.Certificate))
	if err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	// The install certificate and key are written as any mTLS client pair
	// (atomically, the key 0600); a renewal replaces them.
	pair := &pki.ControlCert{Cert: cert, Key: key}
	if err := pair.WriteFiles(certPath, keyPath, *renew); err != nil {
		return err
	}
	verb := "enrolled"
	if *renew {
		verb = "renewed"
	}
	fmt.Fprintf(stdout, "%s install %s: certificate serial %s, valid until %s (renew after %s)\n", verb, got.InstallID, got.Serial,
		got.NotAfter.Format("2006-01-02 15:04 MST"), got.RenewAfter.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(stdout, "  %s\n  %s\n", describeFile(certPath, false), describeFile(keyPath, true))
	return nil
}

// bundleCertificate loads a build bundle as a TLS client certificate.
func bundleCertificate(bundleFile, passwordFile string) (tls.Certificate, error) {
	data, err := os.ReadFile(bundleFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading --bundle: %w", err)
	}
	password, err := secure.ReadSecretFile(passwordFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading --password-file: %w", err)
	}
	key, leaf, chain, err := pki.DecodeBundle(data, password)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--bundle %s: %w", bundleFile, err)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, ca := range chain {
		if !isSelfSigned(ca) { // the anchor is the server's to know, not to be sent
			c.Certificate = append(c.Certificate, ca.Raw)
		}
	}
	return c, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}
