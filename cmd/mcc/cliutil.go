package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mccgate/mcc/fusion"
)

// This file holds flag helpers shared by the PKI commands (ca, issue,
// revoke, certify).

// usageError prints one line naming the bad input and returns errUsage, so
// run exits 2 without printing the error again.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s (see %s --help)\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return errUsage
}

// parseQuiet runs fs.Parse without letting the flag package print: on
// -h/--help it prints the usage and returns flag.ErrHelp; on a bad flag it
// prints one line (the flag package's message and a hint) and returns
// errUsage, instead of the message followed by the whole usage.
func parseQuiet(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	default:
		return usageError(fs, "%v", err)
	}
}

// groupSubcommands returns the subcommands of a command group, read from
// the group's own --help output (subcommandUsage's format), so that the
// top-level usage lists nested commands of every group, including groups
// defined in other files, without a second list to keep in sync.
func groupSubcommands(c command) (subs [][2]string) {
	// `mcc --help` must work even if one command's help is broken; that
	// command is then listed by its name alone.
	defer func() {
		if recover() != nil {
			subs = nil
		}
	}()
	// Help may go to either stream and end in any error (ErrHelp): only
	// the "Subcommands:" section matters.
	var buf bytes.Buffer
	_ = c.run(context.Background(), []string{"--help"}, &buf, &buf)
	text := buf.String()
	i := strings.Index(text, subcommandsHeader)
	if i < 0 {
		return nil
	}
	for _, line := range strings.Split(text[i+len(subcommandsHeader):], "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		name, summary, ok := strings.Cut(strings.TrimSpace(line), "  ")
		if !ok {
			continue
		}
		subs = append(subs, [2]string{name, strings.TrimSpace(summary)})
	}
	return subs
}

const subcommandsHeader = "Subcommands:\n"

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
		if err := parseQuiet(fs, args); err != nil {
			return nil, err
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
	fmt.Fprintf(w, "Usage: mcc %s <subcommand> [flags]\n\n%s", group, subcommandsHeader)
	for _, s := range subs {
		// At least two spaces between name and summary: groupSubcommands
		// splits there (names may hold one space: "audit verify").
		fmt.Fprintf(w, "  %-14s  %s\n", s[0], s[1])
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
