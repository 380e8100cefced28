package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/client"
)

// remoteIssue is `mcc issue --server`: the server issues, the CLI writes
// the same files the local mode writes.
type remoteIssue struct {
	set, app                   string
	build                      certid.BuildInfo
	dateGiven                  bool          // else the server stamps the build date
	validFor                   time.Duration // 0: the server's default
	out, legacyOut, recordPath string
	idempotencyKey             string
	profile                    string // --profile: modern, android or ios
}

// ifSet is d when the flag was given on the command line, else 0.
func ifSet(fs *flag.FlagSet, name string, d time.Duration) time.Duration {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	if set {
		return d
	}
	return 0
}

func runIssueRemote(ctx context.Context, remote *remoteFlags, ri remoteIssue, stdout io.Writer) error {
	if ri.recordPath == "" {
		ri.recordPath = pki.RecordPathFor(ri.out)
	}
	outputs := []string{ri.out, pki.PasswordPath(ri.out), ri.recordPath}
	profile := ri.profile // the server takes the platform names too
	if profile == "" {
		profile = client.ProfileModern
	}
	if ri.legacyOut != "" {
		outputs = append(outputs, ri.legacyOut, pki.PasswordPath(ri.legacyOut))
		profile = client.ProfileBoth
	}
	// Before the request: a certificate issued and then not written is
	// one the pipeline never gets (a retry would replay it, but only
	// within the server's idempotency window).
	if err := checkNewOutputs(outputs); err != nil {
		return err
	}
	c, err := remote.client()
	if err != nil {
		return err
	}
	req := client.BuildRequest{
		AppID: ri.app, BuildID: ri.build.ID, BuildUser: ri.build.User, BuildHost: ri.build.Host,
		SDKVersion: ri.build.SDK, Profile: profile,
	}
	if ri.dateGiven {
		d := ri.build.Date.UTC()
		req.BuildDate = &d
	}
	if ri.validFor > 0 {
		req.ValidFor = ri.validFor.String()
	}
	key := ri.idempotencyKey
	if key == "" {
		key = issueIdempotencyKey(ri.set, ri.app, ri.build.ID, profile)
	}
	b, err := c.IssueBuild(ctx, ri.set, req, key)
	if client.IsProblem(err, "idempotency-key-reused") {
		return fmt.Errorf("%w\n  build %q of %s was issued through this token with other details in the last 24 h; "+
			"pass --idempotency-key to issue another certificate for it", err, ri.build.ID, ri.app)
	}
	if err != nil {
		return err
	}
	rec, recData, err := checkIssuedBuild(ctx, c, ri.set, b)
	if err != nil {
		return err
	}
	files, err := writeIssuedBuild(b, recData, ri)
	if err != nil {
		return err
	}
	printIssued(stdout, rec, files)
	if b.Replayed {
		fmt.Fprintln(stdout, "note: the server replayed the build an earlier request with the same idempotency key issued (no new certificate)")
	}
	return nil
}

// issueIdempotencyKey names one issuance: the same job retried sends the
// same key, and the server returns the build it already issued.
func issueIdempotencyKey(set, app, build, profile string) string {
	sum := sha256.Sum256([]byte(set + "\x00" + app + "\x00" + build + "\x00" + profile))
	return "mcc-issue-" + hex.EncodeToString(sum[:16])
}

// checkNewOutputs refuses output paths that exist or repeat.
func checkNewOutputs(paths []string) error {
	seen := map[string]bool{}
	for _, p := range paths {
		abs, _ := filepath.Abs(p)
		if seen[abs] {
			return fmt.Errorf("output path %s is used twice", p)
		}
		seen[abs] = true
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite it", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// checkIssuedBuild verifies what the server sent before anything is
// written: the record is signed by the fusion set's CA, and every bundle
// is one the record certifies and opens with its password to the
// record's certificate. It returns the record and its file encoding.
func checkIssuedBuild(ctx context.Context, c *client.Client, set string, b *client.Build) (*pki.Record, []byte, error) {
	if b.Bundle == nil || len(b.Record) == 0 {
		return nil, nil, errors.New("the server's answer has no bundle or record")
	}
	var rec pki.Record
	if err := json.Unmarshal(b.Record, &rec); err != nil {
		return nil, nil, fmt.Errorf("the server's record: %w", err)
	}
	recData, err := rec.Encode()
	if err != nil {
		return nil, nil, fmt.Errorf("the server's record: %w", err)
	}
	caPEM, err := c.CAPEM(ctx, set)
	if err != nil {
		return nil, nil, fmt.Errorf("getting the CA of %s to check the record: %w", set, err)
	}
	caCert, err := pki.ParseCertificatePEM(caPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA of %s: %w", set, err)
	}
	for _, bd := range []*client.Bundle{b.Bundle, b.LegacyBundle} {
		if bd == nil {
			continue
		}
		if _, err := pki.VerifyRecord(recData, caCert, &pki.BundleToVerify{Data: bd.Data, Password: bd.Password}); err != nil {
			return nil, nil, fmt.Errorf("the server's build does not verify (nothing written): %w", err)
		}
	}
	return &rec, recData, nil
}

// writeIssuedBuild writes the bundles, password files (0600) and record,
// removing what it wrote when a later file fails.
func writeIssuedBuild(b *client.Build, recData []byte, ri remoteIssue) (files []pki.WrittenFile, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				os.Remove(f.Path)
			}
		}
	}()
	if err := (&pki.Bundle{Data: b.Bundle.Data, Password: b.Bundle.Password}).Write(ri.out); err != nil {
		return nil, err
	}
	files = append(files,
		pki.WrittenFile{Path: ri.out, What: "PKCS#12 bundle (" + b.Bundle.Format + ")", Private: true},
		pki.WrittenFile{Path: pki.PasswordPath(ri.out), What: "bundle password", Private: true})
	if ri.legacyOut != "" {
		if b.LegacyBundle == nil {
			return files, errors.New("the server sent no legacy bundle")
		}
		if err := (&pki.Bundle{Data: b.LegacyBundle.Data, Password: b.LegacyBundle.Password}).Write(ri.legacyOut); err != nil {
			return files, err
		}
		files = append(files,
			pki.WrittenFile{Path: ri.legacyOut, What: "legacy PKCS#12 bundle (" + b.LegacyBundle.Format + ", for old iOS/Android importers)", Private: true},
			pki.WrittenFile{Path: pki.PasswordPath(ri.legacyOut), What: "legacy bundle password", Private: true})
	}
	f, err := os.OpenFile(ri.recordPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return files, fmt.Errorf("writing record: %w", err)
	}
	files = append(files, pki.WrittenFile{Path: ri.recordPath, What: "certified-secure record (signed)"})
	if _, err := f.Write(recData); err != nil {
		f.Close()
		return files, fmt.Errorf("writing record: %w", err)
	}
	if err := f.Close(); err != nil {
		return files, fmt.Errorf("writing record: %w", err)
	}
	return files, nil
}
