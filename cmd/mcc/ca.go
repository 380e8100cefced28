package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/mccgate/mcc/pki"
)

var caSubcommands = [][2]string{
	{"init", "create a self-signed CA in a directory"},
	{"audit verify", "check the CA's audit log (hash chain and signatures)"},
	{"crl", "re-sign the CRL with a new NextUpdate (run before it expires)"},
}

// runCA dispatches `mcc ca <subcommand>`.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		subcommandUsage(stderr, "ca", caSubcommands)
		return errUsage
	}
	switch {
	case isHelp(args[0]):
		subcommandUsage(stdout, "ca", caSubcommands)
		return nil
	case args[0] == "init":
		return runCAInit(args[1:], stdout, stderr)
	case args[0] == "audit":
		if len(args) > 1 && args[1] == "verify" {
			return runCAAuditVerify(args[2:], stdout, stderr)
		}
		if len(args) > 1 && isHelp(args[1]) {
			subcommandUsage(stdout, "ca", caSubcommands)
			return nil
		}
		fmt.Fprintln(stderr, "mcc ca audit: want 'mcc ca audit verify --dir DIR' (see mcc ca --help)")
		return errUsage
	case args[0] == "crl":
		return runCACRL(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcc ca: unknown subcommand %q (see mcc ca --help)\n", args[0])
	return errUsage
}

func runCAInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca init", "ca init --dir DIR [--name NAME] [--key-type ecdsa-p256|ecdsa-p384|rsa-3072|rsa-4096] [--valid-for DUR]", stderr)
	dir := fs.String("dir", "", "directory for the CA (created 0700; must not hold a CA yet)")
	name := fs.String("name", pki.DefaultCAName, "CA common name")
	keyType := fs.String("key-type", string(pki.KeyECDSAP256), "CA key: ecdsa-p256, ecdsa-p384, rsa-3072 or rsa-4096")
	validFor := fs.String("valid-for", "3650d", "CA validity (e.g. 3650d, 87600h)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "dir"); err != nil {
		return err
	}
	kt, err := pki.ParseKeyType(*keyType)
	if err != nil {
		return usageError(fs, "--key-type: %v", err)
	}
	d, err := parsePositiveDuration(fs, "valid-for", *validFor)
	if err != nil {
		return err
	}
	ca, err := pki.InitCA(*dir, pki.CAOptions{Name: *name, KeyType: kt, ValidFor: d})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created CA %q (%s, valid until %s) in %s\n", *name, kt, ca.Cert.NotAfter.UTC().Format(time.RFC3339), ca.Dir)
	for _, f := range []struct {
		name, what string
		private    bool
	}{
		{pki.CACertFile, "CA certificate: the trusted_ca of your fusion sets", false},
		{pki.CAKeyFile, "CA private key: keep it offline or in a secret store", true},
		{pki.RevokedFile, "revocation list (revocation.files), updated by mcc revoke", false},
		{pki.CRLFile, "CRL (revocation.crls), updated by mcc revoke and mcc ca crl", false},
		{pki.AuditFile, "audit log of issuances and revocations", true},
	} {
		fmt.Fprintf(stdout, "  %-40s %s\n", describeFile(filepath.Join(ca.Dir, f.name), f.private), f.what)
	}
	fmt.Fprintf(stdout, "CA sha256: %s\n", ca.Fingerprint())
	return nil
}

func runCAAuditVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca audit verify", "ca audit verify --dir DIR", stderr)
	dir := fs.String("dir", "", "CA directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "dir"); err != nil {
		return err
	}
	caCert, err := pki.LoadCACert(*dir)
	if err != nil {
		return err
	}
	path := filepath.Join(*dir, pki.AuditFile)
	sum, err := pki.VerifyAudit(path, caCert)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(stdout, "audit log OK: %d entries, head sha256 %s\n", sum.Entries, sum.Head)
	fmt.Fprintln(stdout, "(keep the head hash elsewhere: a removed tail is only visible against an earlier head)")
	return nil
}

func runCACRL(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ca crl", "ca crl --dir DIR [--next-update DUR]", stderr)
	dir := fs.String("dir", "", "CA directory")
	next := fs.String("next-update", "7d", "time from now to the CRL's NextUpdate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "dir"); err != nil {
		return err
	}
	d, err := parsePositiveDuration(fs, "next-update", *next)
	if err != nil {
		return err
	}
	ca, err := pki.LoadCA(*dir)
	if err != nil {
		return err
	}
	crl, err := ca.RefreshCRL(d)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: CRL number %s, %d revoked, next update %s\n",
		ca.Path(pki.CRLFile), crl.Number, len(crl.RevokedCertificateEntries), crl.NextUpdate.UTC().Format(time.RFC3339))
	return nil
}
