package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mccgate/mcc/fusion"
)

// This file holds flag helpers shared by the PKI commands (ca, issue,
// revoke, certify).

// usageError prints one line naming the bad input and returns errUsage, so
// run exits 2 without printing the error again.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s (see --help)\n", fs.Name(), fmt.Sprintf(format, args...))
	return errUsage
}

// requireFlags reports the first empty required string flag.
func requireFlags(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if f := fs.Lookup(n); f != nil && f.Value.String() == "" {
			return usageError(fs, "--%s is required", n)
		}
	}
	return nil
}

// parseArgs parses flags that may come before or after positional
// arguments ("certify verify RECORD --ca DIR") and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		rest := fs.Args()
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parsePositiveDuration reads a flag value like "90d", "8760h" or "30m".
func parsePositiveDuration(fs *flag.FlagSet, name, value string) (time.Duration, error) {
	d, err := fusion.ParseDuration(value)
	if err != nil {
		return 0, usageError(fs, "--%s: %v (use e.g. 365d, 720h, 30m)", name, err)
	}
	if d <= 0 {
		return 0, usageError(fs, "--%s must be positive", name)
	}
	return d, nil
}

// subcommandUsage prints the subcommands of a command group.
func subcommandUsage(w io.Writer, group string, subs [][2]string) {
	fmt.Fprintf(w, "Usage: mcc %s <subcommand> [flags]\n\nSubcommands:\n", group)
	for _, s := range subs {
		fmt.Fprintf(w, "  %-14s %s\n", s[0], s[1])
	}
	fmt.Fprintf(w, "\nRun 'mcc %s <subcommand> --help' for its flags.\n", group)
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// describeFile is "path (private, 0600)" or "path".
func describeFile(path string, private bool) string {
	if private {
		return path + "  [PRIVATE 0600]"
	}
	return path
}
