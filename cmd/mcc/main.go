// Command mcc is the mobile client certificates CLI: the CI/CD side (CA,
// issuance, revocation, certified-secure records) and the gateway side
// (quickstart, xDS control plane, ext_authz service).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one `mcc` subcommand. run gets the arguments after the command
// name and returns an error that main prints as one line.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"quickstart", "start a protected Caddy gateway on localhost with a demo PKI", runQuickstart},
		{"ca", "manage a certificate authority (ca init)", runCA},
		{"issue", "issue an app build's client certificate bundle and certified-secure record", runIssue},
		{"revoke", "revoke a certificate and update the revocation list and CRL", runRevoke},
		{"enroll", "play the app: trade the build bundle for an install certificate (or renew one)", runEnroll},
		{"certify", "verify a certified-secure record (certify verify)", runCertify},
		{"cert", "issue control-channel certificates for mTLS (cert create)", runCert},
		{"validate", "check a fusion set file and print every problem", runValidate},
		{"xds", "run the Envoy xDS control plane", runXDS},
		{"authz", "run the Envoy ext_authz and access-log service", runAuthz},
		{"ban", "list or lift fail-safe bans in the shared store (ban list, ban lift)", runBan},
		{"server", "run mcc server, the API for CI/CD, and manage its tokens, backups and CAs", runServer},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks an error caused by bad command-line input; flag has already
// printed the details.
var errUsage = errors.New("usage error")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "mcc %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "mcc: unknown command %q (see mcc --help)\n", args[0])
	return 2
}

// usage lists every command, and for command groups (ca, certify, cert,
// ...) every subcommand, so nothing is only discoverable by trial.
func usage(w io.Writer) {
	fmt.Fprintln(w, "mcc: mobile client certificates for Caddy and Envoy")
	fmt.Fprintln(w, "\nUsage: mcc <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		subs := groupSubcommands(c)
		if len(subs) == 0 {
			fmt.Fprintf(w, "  %-22s %s\n", c.name, c.summary)
			continue
		}
		for _, s := range subs {
			fmt.Fprintf(w, "  %-22s %s\n", c.name+" "+s[0], s[1])
		}
	}
	fmt.Fprintln(w, "\nRun 'mcc <command> --help' for a command's flags.")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting, with a
// usage line, so every command has --help. parseFlags and parseArgs keep
// the flag package from printing the whole usage on a bad flag.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mcc "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mcc %s\n", synopsis)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 { // no empty "Flags:" header for commands without flags
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args that must all be flags; a bad flag or a stray
// argument prints one line with a hint and returns errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseQuiet(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}
