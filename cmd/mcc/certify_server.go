package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/client"
)

// runCertifyVerifyRemote is `mcc certify verify --server`: the server
// checks the record against the fusion set's CA and its revocations.
func runCertifyVerifyRemote(ctx context.Context, remote *remoteFlags, recordPath, bundlePath, pwPath string, allowRevoked bool, stdout, stderr io.Writer) error {
	data, err := os.ReadFile(recordPath)
	if err != nil {
		return fmt.Errorf("reading record: %w", err)
	}
	bundle, err := readBundleArg(bundlePath, pwPath)
	if err != nil {
		return err
	}
	c, err := remote.client()
	if err != nil {
		return err
	}
	var v *client.RecordVerification
	if bundle != nil {
		v, err = c.VerifyRecord(ctx, data, bundle.Data, bundle.Password)
	} else {
		v, err = c.VerifyRecord(ctx, data, nil, "")
	}
	if err != nil {
		return err
	}
	if !v.Valid {
		return fmt.Errorf("%s: %s check failed: %s", recordPath, v.Check, v.Detail)
	}
	var rec pki.Record
	if err := json.Unmarshal(v.Record, &rec); err != nil {
		// The verdict stands; only the summary line lacks detail.
		rec.Certificate.Serial = "(not returned)"
	}
	if v.Revoked {
		what := fmt.Sprintf("the certificate in %s (serial %s) has been revoked (the server says so)", recordPath, rec.Certificate.Serial)
		if !allowRevoked {
			return fmt.Errorf("%s; pass --allow-revoked to only warn", what)
		}
		fmt.Fprintf(stderr, "warning: %s\n", what)
	}
	status := "signed by"
	if v.Revoked {
		status = "REVOKED, signed by"
	}
	fmt.Fprintf(stdout, "OK %s: %s build %q, serial %s, %s CA sha256:%s\n",
		recordPath, rec.Certificate.IdentityURI, rec.Build.ID, rec.Certificate.Serial, status, rec.CA.SHA256)
	if !v.Revoked {
		fmt.Fprintln(stdout, "  not revoked (checked by the server)")
	}
	if bundle != nil {
		fmt.Fprintf(stdout, "OK %s: SHA-256 matches the record and it opens to the record's certificate and key\n", bundlePath)
	}
	return nil
}
