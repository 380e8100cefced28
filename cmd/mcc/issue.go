package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
)

// runIssue issues an app build's client certificate: PKCS#12 bundle(s),
// password file(s), the signed certified-secure record and an audit entry.
func runIssue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("issue", "issue (--ca DIR | --server URL --token-file F) --fusion-set ID --app-id APP --build BUILD --out FILE.p12 [flags]", stderr)
	caDir := fs.String("ca", "", "CA directory (from mcc ca init)")
	setID := fs.String("fusion-set", "", "fusion set id (identity URI host)")
	appID := fs.String("app-id", "", "app id, e.g. com.example.bank (identity URI path)")
	buildID := fs.String("build", "", "build id (events report it as fusedAppToken)")
	buildDate := fs.String("build-date", "", "build time, RFC 3339 (default now)")
	buildUser := fs.String("build-user", "", "who built it (default $USER)")
	buildHost := fs.String("build-host", "", "where it was built (default this host's name)")
	sdk := fs.String("sdk-version", "", "SDK version of the build")
	validFor := fs.String("valid-for", "365d", "certificate validity")
	out := fs.String("out", "", "PKCS#12 bundle to write (AES-256-CBC, PBKDF2-HMAC-SHA256); password goes to FILE.password (0600)")
	profile := fs.String("profile", "modern", "the app platform the bundle is for: modern (AES-256 PKCS#12), android or ios (a 3DES PKCS#12, which their importers take, in an AES-256-GCM envelope the app opens)")
	legacyOut := fs.String("legacy-out", "", "also write a legacy 3DES PKCS#12 bundle for old iOS/Android importers (own password file)")
	recordPath := fs.String("record", "", "certified-secure record to write (default <out>.certified.json)")
	setFile := fs.String("fusion-set-file", "", "fusion set file: record the set's protections and refuse a certificate the set would reject")
	var remote remoteFlags
	remote.register(fs)
	idemKey := fs.String("idempotency-key", "", "with --server: the request's Idempotency-Key (default derived from fusion set, app, build and bundle profile, so a retried job gets the same build)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := remote.check(fs, "ca", "fusion-set-file"); err != nil {
		return err
	}
	if *idemKey != "" && !remote.on() {
		return usageError(fs, "--idempotency-key needs --server")
	}
	required := []string{"fusion-set", "app-id", "build", "out"}
	if !remote.on() {
		required = append([]string{"ca"}, required...)
	}
	if err := requireFlags(fs, required...); err != nil {
		return err
	}
	// The fusion set loader's id rules: never issue a certificate that no
	// fusion file could name.
	if err := certid.CheckSetID(*setID); err != nil {
		return usageError(fs, "--fusion-set: %v", err)
	}
	if err := certid.CheckAppID(*appID); err != nil {
		return usageError(fs, "--app-id: %v", err)
	}
	format, err := pki.PlatformFormat(*profile)
	if err != nil {
		return usageError(fs, "--profile: %v", err)
	}
	if format != pki.FormatModern2023 && *legacyOut != "" {
		return usageError(fs, "--legacy-out writes a bare 3DES bundle; with --profile %s the bundle is already the 3DES one, in an envelope", *profile)
	}
	d, err := parsePositiveDuration(fs, "valid-for", *validFor)
	if err != nil {
		return err
	}
	build := certid.BuildInfo{ID: *buildID, User: *buildUser, Host: *buildHost, SDK: *sdk, Date: time.Now()}
	if *buildDate != "" {
		if build.Date, err = time.Parse(time.RFC3339, *buildDate); err != nil {
			return usageError(fs, "--build-date %q is not RFC 3339 (e.g. 2026-01-31T12:00:00Z)", *buildDate)
		}
	}
	if build.User == "" {
		build.User = currentUser()
	}
	if build.Host == "" {
		build.Host, _ = os.Hostname()
	}
	if remote.on() {
		return runIssueRemote(ctx, &remote, remoteIssue{
			set: *setID, app: *appID, build: build, dateGiven: *buildDate != "", validFor: ifSet(fs, "valid-for", d),
			out: *out, legacyOut: *legacyOut, recordPath: *recordPath, idempotencyKey: *idemKey, profile: *profile,
		}, stdout)
	}

	ca, err := pki.LoadCA(*caDir)
	if err != nil {
		return err
	}
	opts := pki.IssueFilesOptions{
		Request:    pki.IssueRequest{FusionSet: *setID, AppID: *appID, Build: build, ValidFor: d},
		Out:        *out,
		Format:     format,
		LegacyOut:  *legacyOut,
		RecordPath: *recordPath,
	}
	if *setFile != "" {
		g, err := loadSetGuard(ctx, *setFile, *setID, *appID)
		if err != nil {
			return err
		}
		opts.Protections, opts.Check = g.protections, g.check
	}
	res, err := ca.IssueFiles(opts)
	if err != nil {
		return err
	}
	printIssued(stdout, res.Record, res.Files)
	return nil
}

// printIssued reports an issuance and the files written (local and
// --server mode print the same).
func printIssued(stdout io.Writer, rec *pki.Record, files []pki.WrittenFile) {
	c := rec.Certificate
	fmt.Fprintf(stdout, "issued %s for build %q: serial %s, sha256 %s, valid until %s\n",
		c.IdentityURI, rec.Build.ID, c.Serial, c.SHA256, c.NotAfter.Format(time.RFC3339))
	for _, f := range files {
		fmt.Fprintf(stdout, "  %-50s %s\n", describeFile(f.Path, f.Private), f.What)
	}
	if rec.LegacyBundle != nil {
		fmt.Fprintln(stdout, "note: the legacy bundle uses 3DES/SHA-1 for old importers; ship it only where the modern one is refused.")
	}
}

// currentUser is $USER, else the account name.
func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
