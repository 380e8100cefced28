package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mccgate/mcc/pki"
)

// runRevoke revokes a certificate: revoked.txt and crl.pem in the CA
// directory are replaced atomically, so a watching gateway never reads half
// a file.
func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("revoke", "revoke --ca DIR (--serial HEX | --cert FILE.pem) [--reason R] [--crl-next-update DUR] [--force]\n"+
		"       mcc revoke --server URL --token-file F (--serial HEX | --cert FILE.pem | --fusion-set ID --app-id APP --build BUILD [--kind build|install] | --fusion-set ID --install ID) [--reason R]", stderr)
	caDir := fs.String("ca", "", "CA directory")
	serialText := fs.String("serial", "", "serial number in hex (any case, colons allowed)")
	certFile := fs.String("cert", "", "PEM certificate to revoke (instead of --serial)")
	reason := fs.String("reason", "", "RFC 5280 reason: "+strings.Join(pki.ReasonNames(), ", "))
	next := fs.String("crl-next-update", "7d", "time from now to the new CRL's NextUpdate")
	force := fs.Bool("force", false, "revoke even if this CA's audit log does not show it issuing the serial")
	var remote remoteFlags
	remote.register(fs)
	var build remoteBuildFlags
	build.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := remote.check(fs, "ca", "crl-next-update", "force"); err != nil {
		return err
	}
	if err := build.check(fs, remote.on()); err != nil {
		return err
	}
	if !remote.on() {
		if err := requireFlags(fs, "ca"); err != nil {
			return err
		}
	}
	if n := countSet(*serialText != "", *certFile != "", build.on(), build.installOn()); n != 1 {
		if remote.on() {
			return usageError(fs, "give exactly one of --serial, --cert, --build and --install")
		}
		return usageError(fs, "give exactly one of --serial and --cert")
	}
	if _, err := pki.ParseReason(*reason); err != nil {
		return usageError(fs, "--reason: %v", err)
	}
	if remote.on() {
		return runRevokeRemote(ctx, fs, &remote, remoteRevoke{serial: *serialText, certFile: *certFile, build: build, reason: *reason}, stdout)
	}
	validity, err := parsePositiveDuration(fs, "crl-next-update", *next)
	if err != nil {
		return err
	}
	ca, err := pki.LoadCA(*caDir)
	if err != nil {
		return err
	}
	req := pki.RevokeRequest{Reason: *reason, CRLValidity: validity, Force: *force}
	if *serialText != "" {
		if req.Serial, err = pki.ParseSerial(*serialText); err != nil {
			return usageError(fs, "--serial: %v", err)
		}
	} else {
		data, err := os.ReadFile(*certFile)
		if err != nil {
			return fmt.Errorf("reading --cert: %w", err)
		}
		cert, err := pki.ParseCertificatePEM(data)
		if err != nil {
			return fmt.Errorf("--cert %s: %w", *certFile, err)
		}
		if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
			if !*force {
				return fmt.Errorf("%s was not issued by this CA (%s); nothing revoked (pass --force to list its serial anyway)", *certFile, ca.Path(pki.CACertFile))
			}
			fmt.Fprintf(stderr, "warning: %s was not issued by this CA; revoking its serial anyway (--force)\n", *certFile)
		}
		req.Serial = cert.SerialNumber
	}
	res, err := ca.Revoke(req)
	if errors.Is(err, pki.ErrUnknownSerial) {
		return fmt.Errorf("serial %s is not in this CA's audit log (a typo, or another CA's certificate?); nothing revoked (pass --force to revoke it anyway)",
			pki.FormatSerial(req.Serial))
	}
	if err != nil {
		return err
	}
	if !res.Known {
		fmt.Fprintf(stderr, "warning: serial %s is not in this CA's audit log (not issued here?); revoked anyway (--force)\n", res.Serial)
	}
	if res.AlreadyRevoked {
		fmt.Fprintf(stdout, "serial %s was already revoked; CRL re-signed\n", res.Serial)
	} else {
		fmt.Fprintf(stdout, "revoked serial %s (reason %s)\n", res.Serial, res.Reason)
	}
	fmt.Fprintf(stdout, "  %s updated\n  %s updated: CRL number %s, next update %s\n",
		ca.Path(pki.RevokedFile), ca.Path(pki.CRLFile), res.CRLNumber, res.NextUpdate.UTC().Format(time.RFC3339))
	return nil
}
