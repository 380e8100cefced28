package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/client"
)

// remoteBuildFlags name every certificate of one build (`mcc revoke
// --server ... --fusion-set ID --app-id APP --build BUILD [--kind K]`), or
// of one install (`--fusion-set ID --install ID`).
type remoteBuildFlags struct {
	set, app, build, kind, install string
}

func (b *remoteBuildFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.build, "build", "", "with --server: revoke every certificate of this build id, its installs' included (with --fusion-set and --app-id); revoking its build certificate also stops its enrollments")
	fs.StringVar(&b.set, "fusion-set", "", "with --build or --install: the fusion set")
	fs.StringVar(&b.app, "app-id", "", "with --build: the build's app id")
	fs.StringVar(&b.kind, "kind", "", "with --build: only its `build` certificates, or only its `install` certificates (every install of the build)")
	fs.StringVar(&b.install, "install", "", "with --server: revoke every certificate of this install id (with --fusion-set)")
}

// on reports a build named; installOn an install.
func (b *remoteBuildFlags) on() bool        { return b.build != "" || b.app != "" || b.kind != "" }
func (b *remoteBuildFlags) installOn() bool { return b.install != "" }

func (b *remoteBuildFlags) check(fs *flag.FlagSet, remote bool) error {
	switch {
	case !b.on() && !b.installOn():
		if b.set != "" {
			return usageError(fs, "--fusion-set goes with --build or --install")
		}
		return nil
	case !remote:
		return usageError(fs, "--build and --install need --server (a CA directory revokes by serial)")
	case b.on() && b.installOn():
		return usageError(fs, "give --build or --install, not both")
	case b.installOn() && b.set == "":
		return usageError(fs, "--install needs --fusion-set")
	case b.on() && (b.build == "" || b.set == "" || b.app == ""):
		return usageError(fs, "--build, --fusion-set and --app-id go together")
	case b.kind != "" && b.kind != "build" && b.kind != "install":
		return usageError(fs, "--kind is build or install")
	}
	return nil
}

// countSet counts the true values (exactly-one-of checks).
func countSet(vs ...bool) int {
	n := 0
	for _, v := range vs {
		if v {
			n++
		}
	}
	return n
}

// remoteRevoke is `mcc revoke --server`.
type remoteRevoke struct {
	serial, certFile string
	build            remoteBuildFlags
	reason           string
}

func runRevokeRemote(ctx context.Context, fs *flag.FlagSet, remote *remoteFlags, rr remoteRevoke, stdout io.Writer) error {
	req := client.RevokeRequest{Reason: rr.reason}
	switch {
	case rr.serial != "":
		n, err := pki.ParseSerial(rr.serial)
		if err != nil {
			return usageError(fs, "--serial: %v", err)
		}
		req.Serial = pki.FormatSerial(n)
	case rr.certFile != "":
		data, err := os.ReadFile(rr.certFile)
		if err != nil {
			return fmt.Errorf("reading --cert: %w", err)
		}
		cert, err := pki.ParseCertificatePEM(data)
		if err != nil {
			return fmt.Errorf("--cert %s: %w", rr.certFile, err)
		}
		req.Serial = pki.FormatSerial(cert.SerialNumber)
	case rr.build.installOn():
		req.Install = &client.InstallRef{FusionSet: rr.build.set, InstallID: rr.build.install}
	default:
		req.Build = &client.BuildRef{FusionSet: rr.build.set, AppID: rr.build.app, BuildID: rr.build.build}
		if rr.build.kind != "" {
			req.Build.Kinds = []string{rr.build.kind}
		}
	}
	c, err := remote.client()
	if err != nil {
		return err
	}
	res, err := c.Revoke(ctx, req)
	if err != nil {
		return err
	}
	if len(res.Revoked) == 0 && len(res.AlreadyRevoked) == 0 {
		return fmt.Errorf("no certificate matched; nothing revoked")
	}
	reason := rr.reason
	if reason == "" {
		reason = "unspecified"
	}
	for _, s := range res.Revoked {
		fmt.Fprintf(stdout, "revoked serial %s (reason %s)\n", s, reason)
	}
	for _, s := range res.AlreadyRevoked {
		fmt.Fprintf(stdout, "serial %s was already revoked\n", s)
	}
	var crls []string
	for _, c := range res.CRLs {
		crls = append(crls, fmt.Sprintf("%s (number %d)", c.FusionSet, c.Number))
	}
	if len(crls) > 0 {
		fmt.Fprintf(stdout, "  CRL re-signed: %s; gateways following it pick it up at their next fetch\n", strings.Join(crls, ", "))
	}
	return nil
}
