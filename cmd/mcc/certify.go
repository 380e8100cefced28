package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

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
		return runCertifyVerify(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcc certify: unknown subcommand %q (see mcc certify --help)\n", args[0])
	return errUsage
}

func runCertifyVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certify verify", "certify verify RECORD (--ca DIR|ca.pem [--crl FILE] [--revoked FILE] | --server URL --token-file F) [--allow-revoked] [--bundle FILE.p12 [--password-file F]]", stderr)
	caPath := fs.String("ca", "", "CA directory or CA certificate file (the private key is not needed)")
	bundlePath := fs.String("bundle", "", "PKCS#12 bundle to check against the record")
	pwPath := fs.String("password-file", "", "bundle password file (default <bundle>.password)")
	crlPath := fs.String("crl", "", "CRL to check the record's certificate against (default crl.pem of the --ca directory)")
	listPath := fs.String("revoked", "", "revocation list to check (default revoked.txt of the --ca directory)")
	allowRevoked := fs.Bool("allow-revoked", false, "a revoked certificate is a warning, not a failure (exit 0)")
	var remote remoteFlags
	remote.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want exactly one RECORD file, got %d arguments", len(pos))
	}
	if err := remote.check(fs, "ca", "crl", "revoked"); err != nil {
		return err
	}
	if !remote.on() {
		if err := requireFlags(fs, "ca"); err != nil {
			return err
		}
	}
	if *pwPath != "" && *bundlePath == "" {
		return usageError(fs, "--password-file needs --bundle")
	}
	if remote.on() {
		return runCertifyVerifyRemote(ctx, &remote, pos[0], *bundlePath, *pwPath, *allowRevoked, stdout, stderr)
	}
	caCert, err := loadCACertArg(*caPath)
	if err != nil {
		return err
	}
	bundle, err := readBundleArg(*bundlePath, *pwPath)
	if err != nil {
		return err
	}
	rec, err := pki.ReadRecordFile(pos[0], caCert, bundle)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	// The record's signature proves what was issued; whether the
	// certificate still stands is the CA's revocation lists' call.
	st, err := recordRevocation(*caPath, *crlPath, *listPath, caCert, rec)
	if err != nil {
		return fmt.Errorf("%s: checking revocation: %w", pos[0], err)
	}
	if st.Revoked {
		what := fmt.Sprintf("the certificate in %s (serial %s) has been revoked (listed in %s", pos[0], rec.Certificate.Serial, st.Source)
		if st.Reason != "" {
			what += fmt.Sprintf(", reason %s, %s", st.Reason, st.At.UTC().Format(time.RFC3339))
		}
		what += ")"
		if !*allowRevoked {
			return fmt.Errorf("%s; pass --allow-revoked to only warn", what)
		}
		fmt.Fprintf(stderr, "warning: %s\n", what)
	}
	if st.StaleCRL {
		fmt.Fprintf(stderr, "warning: %s is past its NextUpdate; a newer CRL may list more (run mcc ca crl)\n", st.Checked[0])
	}
	status := "signed by"
	if st.Revoked {
		status = "REVOKED, signed by"
	}
	fmt.Fprintf(stdout, "OK %s: %s build %q, serial %s, %s CA sha256:%s\n",
		pos[0], rec.Certificate.IdentityURI, rec.Build.ID, rec.Certificate.Serial, status, rec.CA.SHA256)
	if len(st.Checked) == 0 {
		fmt.Fprintln(stdout, "  revocation not checked (give --ca DIR, --crl or --revoked)")
	} else if !st.Revoked {
		fmt.Fprintf(stdout, "  not revoked (checked %s)\n", strings.Join(st.Checked, ", "))
	}
	if bundle != nil {
		fmt.Fprintf(stdout, "OK %s: SHA-256 matches the record and it opens to the record's certificate and key\n", *bundlePath)
	}
	return nil
}

// readBundleArg reads --bundle and its password (--password-file, else
// the file beside the bundle); nil when no bundle was given.
func readBundleArg(bundlePath, pwPath string) (*pki.BundleToVerify, error) {
	if bundlePath == "" {
		return nil, nil
	}
	data, err := os.ReadFile(bundlePath)
	if err != nil {
		return nil, fmt.Errorf("reading bundle: %w", err)
	}
	if pwPath == "" {
		pwPath = pki.PasswordPath(bundlePath)
	}
	pw, err := pki.ReadPasswordFile(pwPath)
	if err != nil {
		return nil, err
	}
	return &pki.BundleToVerify{Data: data, Password: pw}, nil
}

// recordRevocation checks the record's certificate against the CRL and
// revocation list: the flags, else the files of the --ca directory.
func recordRevocation(caArg, crlPath, listPath string, caCert *x509.Certificate, rec *pki.Record) (*pki.RevocationStatus, error) {
	// Defaults from the CA directory are used when present (a copied CA
	// directory may hold only ca.pem); files named by flags must exist.
	if fi, err := os.Stat(caArg); err == nil && fi.IsDir() {
		if p := filepath.Join(caArg, pki.CRLFile); crlPath == "" && pathExists(p) {
			crlPath = p
		}
		if p := filepath.Join(caArg, pki.RevokedFile); listPath == "" && pathExists(p) {
			listPath = p
		}
	}
	serial, err := pki.ParseSerial(rec.Certificate.Serial)
	if err != nil {
		return nil, err
	}
	return pki.CheckRevocation(caCert, crlPath, listPath, serial, rec.Certificate.SHA256, time.Now())
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

func pathExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
