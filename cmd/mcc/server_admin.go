package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// This file holds the `mcc server` subcommands an operator runs on the
// server's host: tokens, the CA import and the KEK. They open the database
// directly (the server may be running: SQLite and PostgreSQL both take
// concurrent writers), and record the OS user as the actor.

// cliActor is who the audit log names for a change made from the CLI.
func cliActor() string { return "cli:" + currentUser() }

// openServerStore opens the database the flags name, without the KEK (token
// commands do not touch sealed keys).
func openServerStore(ctx context.Context, f *serverDBFlags) (*store.DB, error) {
	return store.Open(ctx, store.Options{DataDir: f.data, URL: f.database})
}

func runServerTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server token create", "server token create (--data DIR | --database URL) --name NAME --scope SCOPES [--expires-in DUR] [--out FILE]", stderr)
	var db serverDBFlags
	db.register(fs)
	name := fs.String("name", "", "token name, e.g. ci-android (a-z, 0-9, . _ -)")
	scopeText := fs.String("scope", "", "comma-separated scopes: "+scopeNames())
	expires := fs.String("expires-in", "", "lifetime, e.g. 90d or 720h (default: no expiry)")
	out := fs.String("out", "", "write the token to this `file` (0600, must not exist) instead of printing it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	if err := requireFlags(fs, "name", "scope"); err != nil {
		return err
	}
	if err := auth.CheckName(*name); err != nil {
		return usageError(fs, "--name: %v", err)
	}
	scopes, err := auth.ParseScopes(*scopeText)
	if err != nil {
		return usageError(fs, "--scope: %v", err)
	}
	var lifetime time.Duration
	if *expires != "" {
		if lifetime, err = parsePositiveDuration(fs, "expires-in", *expires); err != nil {
			return err
		}
	}
	if *out != "" {
		// Fail before the token exists, not after.
		if _, err := os.Lstat(*out); err == nil {
			return fmt.Errorf("--out %s already exists; refusing to overwrite it", *out)
		}
	}
	d, err := openServerStore(ctx, &db)
	if err != nil {
		return err
	}
	defer d.Close()
	secret, tok, err := auth.NewTokens(d, time.Now).Create(ctx, *name, scopes, lifetime, cliActor())
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("created token %s (id %s, scopes %s, %s)", tok.Name, tok.ID, joinScopeNames(tok.Scopes), expiryText(tok.ExpiresAt))
	if *out == "" {
		// stdout holds the token alone, so TOKEN=$(mcc server token create ...) works.
		fmt.Fprintln(stderr, summary+"; it is shown once:")
		fmt.Fprintln(stdout, secret)
		return nil
	}
	if err := writeSecretFile(*out, secret+"\n"); err != nil {
		// The token exists but nobody has it: revoke it so it cannot leak later.
		if _, rerr := auth.NewTokens(d, time.Now).Revoke(ctx, tok.ID, cliActor()); rerr != nil {
			return fmt.Errorf("%w (and revoking the unwritten token %s failed: %v)", err, tok.ID, rerr)
		}
		return fmt.Errorf("%w; the token was revoked", err)
	}
	fmt.Fprintf(stdout, "%s\n  %s  [PRIVATE 0600]\n", summary, *out)
	return nil
}

// writeSecretFile creates path 0600; it never replaces a file.
func writeSecretFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func scopeNames() string { return joinScopeNames(auth.AllScopes) }

func joinScopeNames(scopes []auth.Scope) string {
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	return strings.Join(names, ",")
}

func expiryText(t time.Time) string {
	if t.IsZero() {
		return "no expiry"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

func runServerTokenList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server token list", "server token list (--data DIR | --database URL)", stderr)
	var db serverDBFlags
	db.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	d, err := openServerStore(ctx, &db)
	if err != nil {
		return err
	}
	defer d.Close()
	toks, err := auth.NewTokens(d, time.Now).List(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED\tCREATED BY")
	for _, t := range toks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, joinScopeNames(t.Scopes),
			timeOrDash(t.CreatedAt), timeOrDash(t.ExpiresAt), timeOrDash(t.LastUsedAt), timeOrDash(t.RevokedAt), t.CreatedBy)
	}
	return w.Flush()
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func runServerTokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server token revoke", "server token revoke (--data DIR | --database URL) ID|NAME", stderr)
	var db serverDBFlags
	db.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want exactly one token id or name, got %d arguments", len(pos))
	}
	d, err := openServerStore(ctx, &db)
	if err != nil {
		return err
	}
	defer d.Close()
	tok, err := auth.NewTokens(d, time.Now).Revoke(ctx, pos[0], cliActor())
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no token with id or name %q (see mcc server token list)", pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked token %s (id %s) at %s\n", tok.Name, tok.ID, tok.RevokedAt.UTC().Format(time.RFC3339))
	return nil
}

func runServerCAImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server ca import", "server ca import (--data DIR | --database URL --kek-file F) --set ID --ca DIR", stderr)
	var db serverDBFlags
	db.register(fs)
	set := fs.String("set", "", "fusion set id whose CA this becomes (a set keeps its first CA)")
	caDir := fs.String("ca", "", "CA directory from mcc ca init (its key is sealed into the database)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	if err := requireFlags(fs, "set", "ca"); err != nil {
		return err
	}
	srv, err := server.Open(ctx, db.config(nil))
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Authorities().Import(ctx, *set, *caDir, cliActor()); err != nil {
		return err
	}
	cert, err := srv.Authorities().Cert(ctx, *set)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fusion set %s now issues with the CA of %s (sha256 %s); its key is sealed in the database\n",
		*set, *caDir, pki.Fingerprint(cert.Raw))
	fmt.Fprintf(stdout, "note: %s still holds the CA key; move it offline or delete it\n", *caDir)
	return nil
}

func runServerKEKCreate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server kek create", "server kek create --kek-file F", stderr)
	path := fs.String("kek-file", "", "key-encryption key `file` to create (0600; must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "kek-file"); err != nil {
		return err
	}
	if _, err := os.Lstat(*path); err == nil {
		return fmt.Errorf("%s already exists; refusing to replace a key-encryption key (the CA keys sealed with it would be lost)", *path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s, err := keys.LoadOrCreate(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created key-encryption key %s (id %s)  [PRIVATE 0600]\n", *path, s.ID())
	fmt.Fprintln(stdout, "give every server instance the same file (--kek-file); it is in no database or backup: keep a copy apart from them")
	return nil
}
