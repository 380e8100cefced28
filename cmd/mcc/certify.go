package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"

	"github.com/mccgate/mcc/pki"
)

var certifySubcommands = [][2]string{
	{"verify", "check a certified-secure record (and its bundle) against the CA"},
}

// runCertify dispatches `mcc certify <subcommand>`.
func runCertify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		subcommandUsage(stderr, "certify", certifySubcommands)
		return errUsage
	}
	switch {
	case isHelp(args[0]):
		subcommandUsage(stdout, "certify", certifySubcommands)
		return nil
	case args[0] == "verify":
		return runCertifyVerify(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcc certify: unknown subcommand %q (see mcc certify --help)\n", args[0])
	return errUsage
}

func runCertifyVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certify verify", "certify verify RECORD --ca DIR|ca.pem [--bundle FILE.p12 [--password-file F]]", stderr)
	caPath := fs.String("ca", "", "CA directory or CA certificate file (the private key is not needed)")
	bundlePath := fs.String("bundle", "", "PKCS#12 bundle to check against the record")
	pwPath := fs.String("password-file", "", "bundle password file (default <bundle>.password)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want exactly one RECORD file, got %d arguments", len(pos))
	}
	if err := requireFlags(fs, "ca"); err != nil {
		return err
	}
	if *pwPath != "" && *bundlePath == "" {
		return usageError(fs, "--password-file needs --bundle")
	}
	caCert, err := loadCACertArg(*caPath)
	if err != nil {
		return err
	}
	var bundle *pki.BundleToVerify
	if *bundlePath != "" {
		data, err := os.ReadFile(*bundlePath)
		if err != nil {
			return fmt.Errorf("reading bundle: %w", err)
		}
		if *pwPath == "" {
			*pwPath = pki.PasswordPath(*bundlePath)
		}
		pw, err := pki.ReadPasswordFile(*pwPath)
		if err != nil {
			return err
		}
		bundle = &pki.BundleToVerify{Data: data, Password: pw}
	}
	rec, err := pki.ReadRecordFile(pos[0], caCert, bundle)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	fmt.Fprintf(stdout, "OK %s: %s build %q, serial %s, signed by CA sha256:%s\n",
		pos[0], rec.Certificate.IdentityURI, rec.Build.ID, rec.Certificate.Serial, rec.CA.SHA256)
	if bundle != nil {
		fmt.Fprintf(stdout, "OK %s: SHA-256 matches the record and it opens to the record's certificate and key\n", *bundlePath)
	}
	return nil
}

// loadCACertArg accepts a CA directory or a CA certificate file.
func loadCACertArg(path string) (*x509.Certificate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	if fi.IsDir() {
		return pki.LoadCACert(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	cert, err := pki.ParseCertificatePEM(data)
	if err != nil {
		return nil, fmt.Errorf("--ca %s: %w", path, err)
	}
	return cert, nil
}
