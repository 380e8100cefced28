package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backupTables are the tables whose rows the backup tests compare.
var backupTables = []string{"schema_migrations", "tokens", "audit", "cas", "fusion_set_versions",
	"certificates", "idempotency", "crls", "events"}

// writeOne is one state change as the server makes them: a row (a token,
// with a BYTEA hash and a NULL, and an event) and its audit entry, in one
// transaction, so a consistent snapshot has as many events as audit
// entries.
func writeOne(ctx context.Context, db *DB, i int) error {
	return db.Tx(ctx, func(tx *Tx) error {
		now := time.Unix(1_790_000_000, int64(i)).UTC()
		id := fmt.Sprintf("%016x", i)
		if _, err := tx.Exec(ctx, `INSERT INTO tokens (id, name, hash, scopes, created_ns, expires_ns, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			id, "tok-"+id, []byte{0, byte(i), 0xff, 0}, "issue,read", NS(now), NullNS(time.Time{}), "cli:root"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO events (seq, id, time_ns, received_ns, fusion_set, reason, action, client_ip, device_id, serial, cert_sha256, external_id, build_id, app_id, doc)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			i+1, "ev-"+id, NS(now), NS(now), "bank", "tampered", "deny", "203.0.113.7", "dev-1", id, strings.Repeat("ab", 32), "ext-"+id, "b1", "com.bank", `{"id":"ev-`+id+`","note":"é ' \" ?"}`); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, AuditEntry{Actor: "ci", Action: AuditTokenCreate, Subject: "token/tok-" + id, Detail: map[string]any{"i": i}})
		return err
	})
}

// writer keeps writing until stopped; it returns how many changes it made.
type writer struct {
	stop chan struct{}
	done chan struct{}
	n    atomic.Int64
	err  error
}

func startWriter(ctx context.Context, db *DB, from int) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := from; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			if err := writeOne(ctx, db, i); err != nil {
				w.err = err
				return
			}
			w.n.Add(1)
		}
	}()
	return w
}

// waitFor blocks until the writer has made n changes.
func (w *writer) waitFor(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for w.n.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("writer made only %d changes (%v)", w.n.Load(), w.err)
		}
		select {
		case <-w.done:
			t.Fatalf("writer stopped: %v", w.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (w *writer) halt(t *testing.T) int64 {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatal(w.err)
	}
	return w.n.Load()
}

// dump is every row of every table, each row printed the same way
// whichever database it came from, sorted.
func dump(t *testing.T, db *DB) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	for _, name := range backupTables {
		rows, err := db.Query(ctx, `SELECT * FROM `+name)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals, ptrs := scanRow(len(cols))
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = "x" + hex.EncodeToString(bs)
				}
				fmt.Fprintf(&b, "%s=%v|", cols[i], v)
			}
			out[name] = append(out[name], b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		sort.Strings(out[name])
	}
	return out
}

// sameRows fails unless both databases hold exactly the same rows.
func sameRows(t *testing.T, want, got *DB) {
	t.Helper()
	w, g := dump(t, want), dump(t, got)
	for _, name := range backupTables {
		if strings.Join(w[name], "\n") != strings.Join(g[name], "\n") {
			t.Fatalf("table %s differs: %d rows want, %d got\nwant %.300v\ngot  %.300v", name, len(w[name]), len(g[name]), w[name], g[name])
		}
	}
}

// snapshotOf checks that restored holds a consistent snapshot of source
// taken while the writer ran: every restored row is in source, and
// (each change being one transaction) as many tokens, events and audit
// entries, whose chain is a prefix of the source's.
func snapshotOf(t *testing.T, source, restored *DB) int {
	t.Helper()
	ctx := context.Background()
	src, got := dump(t, source), dump(t, restored)
	for _, name := range backupTables {
		have := map[string]bool{}
		for _, r := range src[name] {
			have[r] = true
		}
		for _, r := range got[name] {
			if !have[r] {
				t.Fatalf("restored %s row not in the source: %s", name, r)
			}
		}
	}
	n := len(got["audit"])
	if len(got["tokens"]) != n || len(got["events"]) != n {
		t.Fatalf("torn snapshot: %d tokens, %d events, %d audit entries", len(got["tokens"]), len(got["events"]), n)
	}
	entries, head, err := restored.VerifyAudit(ctx)
	if err != nil || entries != int64(n) {
		t.Fatalf("restored audit: %d entries, %v", entries, err)
	}
	if n > 0 {
		srcEntry, err := source.ReadAudit(ctx, int64(n-1), 1)
		if err != nil || len(srcEntry) != 1 || srcEntry[0].Hash != head {
			t.Fatalf("restored head %s is not the source's entry %d: %v %v", head, n, srcEntry, err)
		}
	}
	return n
}
