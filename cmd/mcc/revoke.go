package main

import (
	"context"
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
	fs := newFlagSet("revoke", "revoke --ca DIR (--serial HEX | --cert FILE.pem) [--reason R] [--crl-next-update DUR]", stderr)
	caDir := fs.String("ca", "", "CA directory")
	serialText := fs.String("serial", "", "serial number in hex (any case, colons allowed)")
	certFile := fs.String("cert", "", "PEM certificate to revoke (instead of --serial)")
	reason := fs.String("reason", "", "RFC 5280 reason: "+strings.Join(pki.ReasonNames(), ", "))
	next := fs.String("crl-next-update", "7d", "time from now to the new CRL's NextUpdate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "ca"); err != nil {
		return err
	}
	if (*serialText == "") == (*certFile == "") {
		return usageError(fs, "give exactly one of --serial and --cert")
	}
	if _, err := pki.ParseReason(*reason); err != nil {
		return usageError(fs, "--reason: %v", err)
	}
	validity, err := parsePositiveDuration(fs, "crl-next-update", *next)
	if err != nil {
		return err
	}
	ca, err := pki.LoadCA(*caDir)
	if err != nil {
		return err
	}
	req := pki.RevokeRequest{Reason: *reason, CRLValidity: validity}
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
			fmt.Fprintf(stderr, "warning: %s was not issued by this CA; revoking its serial anyway\n", *certFile)
		}
		req.Serial = cert.SerialNumber
	}
	res, err := ca.Revoke(req)
	if err != nil {
		return err
	}
	if !res.Known {
		fmt.Fprintf(stderr, "warning: serial %s is not in this CA's audit log (not issued here?); revoked anyway\n", res.Serial)
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
