package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// cli runs mcc in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// wantOneLineError checks a failing run: the exit code, and exactly one
// stderr line containing want.
func wantOneLineError(t *testing.T, code int, stderr string, wantCode int, want string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit code %d, want %d (stderr %q)", code, wantCode, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not exactly one line: %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not mention %q", stderr, want)
	}
}

func TestPKICommandsHaveHelp(t *testing.T) {
	for _, args := range [][]string{
		{"ca", "--help"},
		{"ca", "init", "--help"},
		{"ca", "audit", "verify", "--help"},
		{"ca", "crl", "--help"},
		{"issue", "--help"},
		{"revoke", "--help"},
		{"certify", "--help"},
		{"certify", "verify", "--help"},
		{"version", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, args...)
			if code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			help := stdout + stderr
			if !strings.Contains(help, "Usage: mcc "+args[0]) {
				t.Errorf("no usage line:\n%s", help)
			}
			if len(args) > 2 || args[0] == "issue" || args[0] == "revoke" {
				if !strings.Contains(help, "-") || !strings.Contains(help, "Flags:") {
					t.Errorf("no flags listed:\n%s", help)
				}
			}
		})
	}
	code, _, stderr := runCLI(t, "ca")
	if code != 2 || !strings.Contains(stderr, "init") {
		t.Errorf("bare 'mcc ca': exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "ca", "destroy")
	wantOneLineError(t, code, stderr, 2, `unknown subcommand "destroy"`)
	code, _, stderr = runCLI(t, "certify", "sign")
	wantOneLineError(t, code, stderr, 2, `unknown subcommand "sign"`)
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "mcc ") || !strings.Contains(stdout, "go1.") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	code, _, stderr := runCLI(t, "version", "extra")
	if code != 2 || !strings.Contains(stderr, "unexpected argument") {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}

// leafCommands lists every runnable command path: plain commands, and the
// subcommands of each group as `mcc --help` lists them.
func leafCommands(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, c := range commands() {
		subs := groupSubcommands(c)
		if len(subs) == 0 {
			out = append(out, []string{c.name})
			continue
		}
		for _, s := range subs {
			out = append(out, append([]string{c.name}, strings.Fields(s[0])...))
		}
	}
	return out
}

// TestTopLevelHelpListsNestedCommands: `mcc --help` names every nested
// subcommand, so `ca crl` or `ca audit verify` are not found only by trial.
func TestTopLevelHelpListsNestedCommands(t *testing.T) {
	code, stdout, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"ca init", "ca crl", "ca audit verify", "certify verify", "cert create", "issue", "revoke", "validate", "xds", "authz", "quickstart", "version"} {
		if !strings.Contains(stdout, "\n  "+want+" ") {
			t.Errorf("mcc --help does not list %q:\n%s", want, stdout)
		}
	}
	// Every group's own subcommands appear (ban list|lift included, when
	// the ban group exists).
	for _, leaf := range leafCommands(t) {
		if !strings.Contains(stdout, "\n  "+strings.Join(leaf, " ")+" ") {
			t.Errorf("mcc --help does not list %q", strings.Join(leaf, " "))
		}
	}
	// A group name alone is not a leaf: its subcommands replace it.
	if strings.Contains(stdout, "\n  ca  ") || strings.Contains(stdout, "\n  certify  ") {
		t.Errorf("group listed without its subcommands:\n%s", stdout)
	}
}

// TestEveryCommandBadFlagIsOneLine loops over every command and subcommand
// with an undefined flag: exit 2 and exactly one stderr line that names the
// flag and points at --help, not the whole usage. And every --help has no
// empty "Flags:" header.
func TestEveryCommandBadFlagIsOneLine(t *testing.T) {
	leaves := leafCommands(t)
	if len(leaves) < 12 {
		t.Fatalf("only %d commands found: %v", len(leaves), leaves)
	}
	for _, leaf := range leaves {
		name := strings.Join(leaf, " ")
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, append(append([]string{}, leaf...), "--no-such-flag")...)
			wantOneLineError(t, code, stderr, 2, "flag provided but not defined: -no-such-flag")
			if !strings.Contains(stderr, "mcc "+name+" --help") {
				t.Errorf("no hint naming 'mcc %s --help': %q", name, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout on a flag error: %q", stdout)
			}
			code, stdout, stderr = runCLI(t, append(append([]string{}, leaf...), "--help")...)
			help := stdout + stderr
			if code != 0 || !strings.Contains(help, "Usage: mcc "+name) {
				t.Errorf("--help: exit %d\n%s", code, help)
			}
			if i := strings.Index(help, "Flags:\n"); i >= 0 && !strings.HasPrefix(help[i+len("Flags:\n"):], "  -") {
				t.Errorf("empty or malformed Flags: section:\n%s", help)
			}
		})
	}
	// Groups: help lists subcommands and no Flags: header at all.
	for _, c := range commands() {
		if len(groupSubcommands(c)) == 0 {
			continue
		}
		_, stdout, stderr := runCLI(t, c.name, "--help")
		if strings.Contains(stdout+stderr, "Flags:") {
			t.Errorf("mcc %s --help has a Flags: header:\n%s", c.name, stdout+stderr)
		}
	}
}
