package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Audit actions: every state change the server makes is one entry.
const (
	AuditTokenCreate = "token.create"
	AuditTokenRevoke = "token.revoke"
	AuditSetPublish  = "fusion-set.publish"
	AuditCACreate    = "ca.create"
	AuditCAImport    = "ca.import"
	AuditCertIssue   = "certificate.issue"
	AuditCertRevoke  = "certificate.revoke"
	AuditCRLPublish  = "crl.publish"
	AuditBanLift     = "ban.lift" // a fail-safe ban lifted in the gateways' shared store (console)
	AuditBackup      = "backup"
	AuditRestore     = "restore"
)

// genesis is the Prev of the first entry.
var genesis = strings.Repeat("0", 64)

// AuditEntry is one entry of the server's hash-chained audit log. Hash is
// the SHA-256 of Prev followed by the entry's canonical JSON without Hash,
// so removing, reordering or editing an entry breaks every later link. The
// head hash (VerifyAudit) is what to keep elsewhere to notice a cut tail.
type AuditEntry struct {
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Subject string         `json:"subject"`
	Detail  map[string]any `json:"detail,omitempty"`
	Prev    string         `json:"prev"`
	Hash    string         `json:"hash,omitempty"`
}

// auditLock serializes appends across PostgreSQL instances (SQLite has a
// single writer already).
const auditLock = 0x6d6363_02

// AppendAudit appends e in tx, filling Seq, Time (when zero), Prev and
// Hash. Call it in the transaction of the change it records, so the log
// and the state never disagree.
func (tx *Tx) AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Action == "" || e.Actor == "" {
		return AuditEntry{}, errors.New("audit: action and actor are required")
	}
	if tx.dialect == Postgres {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(?)`, auditLock); err != nil {
			return AuditEntry{}, fmt.Errorf("audit: %w", err)
		}
	}
	var seq sql.NullInt64
	var prev sql.NullString
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		e.Seq, e.Prev = 1, genesis
	case err != nil:
		return AuditEntry{}, fmt.Errorf("audit: reading head: %w", err)
	default:
		e.Seq, e.Prev = seq.Int64+1, prev.String
	}
	if e.Time.IsZero() {
		e.Time = nowUTC()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	h, err := auditHash(e)
	if err != nil {
		return AuditEntry{}, err
	}
	e.Hash = h
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit (seq, time_ns, actor, action, subject, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, NS(e.Time), e.Actor, e.Action, e.Subject, string(detail), e.Prev, e.Hash); err != nil {
		return AuditEntry{}, fmt.Errorf("audit: appending: %w", err)
	}
	return e, nil
}

// auditHash is hex SHA-256 of Prev and the entry's JSON without Hash. The
// detail goes through a JSON round trip first, so the hash of an entry read
// back from the database (numbers as float64, maps sorted) is the same.
func auditHash(e AuditEntry) (string, error) {
	e.Hash = ""
	if e.Detail != nil {
		raw, err := json.Marshal(e.Detail)
		if err != nil {
			return "", fmt.Errorf("audit: %w", err)
		}
		var norm map[string]any
		if err := json.Unmarshal(raw, &norm); err != nil {
			return "", fmt.Errorf("audit: %w", err)
		}
		e.Detail = norm
	}
	body, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("audit: %w", err)
	}
	sum := sha256.New()
	sum.Write([]byte(e.Prev))
	sum.Write(body)
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// ReadAudit returns up to limit entries after afterSeq, oldest first.
func (db *DB) ReadAudit(ctx context.Context, afterSeq int64, limit int) ([]AuditEntry, error) {
	rows, err := db.Query(ctx, `SELECT seq, time_ns, actor, action, subject, detail, prev, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var ns int64
		var detail string
		if err := rows.Scan(&e.Seq, &ns, &e.Actor, &e.Action, &e.Subject, &detail, &e.Prev, &e.Hash); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		e.Time = Time(ns)
		dec := json.NewDecoder(bytes.NewReader([]byte(detail)))
		if err := dec.Decode(&e.Detail); err != nil {
			return nil, fmt.Errorf("audit: entry %d: detail: %w", e.Seq, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// VerifyAudit walks the whole chain and returns its length and head hash,
// or an error naming the first entry that does not link.
func (db *DB) VerifyAudit(ctx context.Context) (entries int64, head string, err error) {
	head = genesis
	var after int64
	for {
		page, err := db.ReadAudit(ctx, after, 1000)
		if err != nil {
			return entries, head, err
		}
		for _, e := range page {
			if e.Seq != after+1 {
				return entries, head, fmt.Errorf("audit: entry %d is missing (next is %d)", after+1, e.Seq)
			}
			if e.Prev != head {
				return entries, head, fmt.Errorf("audit: entry %d does not link to entry %d", e.Seq, after)
			}
			want, herr := auditHash(e)
			if herr != nil {
				return entries, head, herr
			}
			if want != e.Hash {
				return entries, head, fmt.Errorf("audit: entry %d was changed (hash mismatch)", e.Seq)
			}
			head, after = e.Hash, e.Seq
			entries++
		}
		if len(page) < 1000 {
			return entries, head, nil
		}
	}
}

func nowUTC() time.Time { return time.Now().UTC() }

func zapVersion(v int) zap.Field { return zap.Int("version", v) }
func zapName(n string) zap.Field { return zap.String("name", n) }
