package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// The backup holds CA keys sealed with the key-encryption key, which is
// never in the database: a stolen backup opens no CA. So a restore takes
// the backup and the KEK, and checks that one opens the other.

func runServerBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server backup", "server backup (--data DIR | --database URL) --out FILE", stderr)
	var db serverDBFlags
	db.register(fs)
	out := fs.String("out", "", "backup `file` to write (an SQLite file, 0600; must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	if err := requireFlags(fs, "out"); err != nil {
		return err
	}
	d, err := openServerStore(ctx, &db)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Backup(ctx, *out); err != nil {
		return err
	}
	// Recorded after the snapshot: the log says a backup was taken only
	// once it exists.
	err = d.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.AppendAudit(ctx, store.AuditEntry{Time: time.Now(), Actor: cliActor(), Action: store.AuditBackup,
			Subject: "database", Detail: map[string]any{"file": *out}})
		return err
	})
	if err != nil {
		return fmt.Errorf("the backup %s was written, but recording it in the audit log failed: %w", *out, err)
	}
	kek := db.kekFile
	if kek == "" && db.data != "" {
		kek = filepath.Join(db.data, server.KEKFileName)
	}
	fmt.Fprintf(stdout, "backup written to %s  [PRIVATE 0600]\n", *out)
	fmt.Fprintf(stdout, "note: its CA keys are sealed with %s, which is not in the backup; keep a copy of that file apart from it (restore needs both)\n", describeKEK(kek))
	return nil
}

func describeKEK(path string) string {
	if path == "" {
		return "the --kek-file of your server instances"
	}
	return path
}

func runServerRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server restore", "server restore (--data NEWDIR | --database URL) --in FILE --kek-file F", stderr)
	var db serverDBFlags
	db.register(fs)
	in := fs.String("in", "", "backup `file` (from mcc server backup)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := db.check(fs); err != nil {
		return err
	}
	if err := requireFlags(fs, "in", "kek-file"); err != nil {
		return err
	}
	// The KEK must be usable before anything is restored.
	if _, err := keys.Load(db.kekFile); err != nil {
		return err
	}
	if err := store.Restore(ctx, *in, store.Options{DataDir: db.data, URL: db.database}); err != nil {
		return err
	}
	cfg := db.config(nil)
	if db.data != "" {
		// The data directory keeps its own copy, where `mcc server
		// --data DIR` looks for it.
		dst := filepath.Join(db.data, server.KEKFileName)
		if err := copyKEK(db.kekFile, dst); err != nil {
			return err
		}
		cfg.KEKFile = dst
	}
	srv, err := server.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("restored, but the server does not open it: %w (remove the restored database and restore again with the right --kek-file)", err)
	}
	defer srv.Close()
	err = srv.DB().Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.AppendAudit(ctx, store.AuditEntry{Time: time.Now(), Actor: cliActor(), Action: store.AuditRestore,
			Subject: "database", Detail: map[string]any{"file": *in}})
		return err
	})
	if err != nil {
		return fmt.Errorf("restored, but recording it in the audit log failed: %w", err)
	}
	entries, head, err := srv.DB().VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("restored, but the audit log does not verify: %w", err)
	}
	where := db.data
	if where == "" {
		where = "the PostgreSQL database"
	}
	fmt.Fprintf(stdout, "restored %s into %s: CA keys open with %s; audit log verified (%d entries, head %s)\n", *in, where, describeKEK(cfg.KEKFile), entries, head)
	return nil
}

// copyKEK copies the key-encryption key to dst (0600), unless it is dst.
func copyKEK(src, dst string) error {
	a, errA := filepath.Abs(src)
	b, errB := filepath.Abs(dst)
	if errA == nil && errB == nil && a == b {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("kek: %w", err)
	}
	return writeSecretFile(dst, string(data))
}
