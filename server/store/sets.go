package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SetVersion is one published version of a fusion set.
type SetVersion struct {
	FusionSet string
	Version   int64
	Document  string // as sent; empty when listed without documents
	SHA256    string // hex SHA-256 of Document
	Created   time.Time
	Actor     string
	Comment   string
	Changes   []string // field paths changed since the previous version
}

// SetSummary is a fusion set's newest version with its CA (CA fields
// empty when the set has none).
type SetSummary struct {
	SetVersion
	CACertPEM string
}

const setColumns = `fusion_set, version, sha256, created_ns, actor, comment, changes`

func scanSetVersion(s interface{ Scan(...any) error }, withDoc bool, extra ...any) (SetVersion, error) {
	var v SetVersion
	var created int64
	var changes string
	dest := []any{&v.FusionSet, &v.Version, &v.SHA256, &created, &v.Actor, &v.Comment, &changes}
	if withDoc {
		dest = append(dest, &v.Document)
	}
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return SetVersion{}, err
	}
	v.Created = Time(created)
	if err := json.Unmarshal([]byte(changes), &v.Changes); err != nil {
		return SetVersion{}, fmt.Errorf("fusion set %q version %d: changes: %w", v.FusionSet, v.Version, err)
	}
	return v, nil
}

func setErr(err error, set string, version int64) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		if version > 0 {
			return fmt.Errorf("fusion set %q version %d: %w", set, version, ErrNotFound)
		}
		return fmt.Errorf("fusion set %q: %w", set, ErrNotFound)
	}
	return fmt.Errorf("fusion set %q: %w", set, err)
}

// LatestSetVersion reads a set's newest version with its document, in tx
// (ErrNotFound wrapped when the set was never published).
func (tx *Tx) LatestSetVersion(ctx context.Context, set string) (SetVersion, error) {
	v, err := scanSetVersion(tx.QueryRow(ctx, `SELECT `+setColumns+`, document FROM fusion_set_versions
		WHERE fusion_set = ? ORDER BY version DESC LIMIT 1`, set), true)
	return v, setErr(err, set, 0)
}

// InsertSetVersion stores a new version. Two publishers racing for the
// same version number meet a unique violation (IsUniqueViolation).
func (tx *Tx) InsertSetVersion(ctx context.Context, v SetVersion) error {
	changes, err := json.Marshal(nonNil(v.Changes))
	if err != nil {
		return fmt.Errorf("fusion set %q: %w", v.FusionSet, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO fusion_set_versions (fusion_set, version, document, sha256, created_ns, actor, comment, changes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, v.FusionSet, v.Version, v.Document, v.SHA256, NS(v.Created), v.Actor, v.Comment, string(changes))
	if err != nil {
		return fmt.Errorf("fusion set %q version %d: storing: %w", v.FusionSet, v.Version, err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SetVersionOf reads one version with its document; version 0 is the
// newest.
func (db *DB) SetVersionOf(ctx context.Context, set string, version int64) (SetSummary, error) {
	q := `SELECT v.fusion_set, v.version, v.sha256, v.created_ns, v.actor, v.comment, v.changes, v.document, COALESCE(c.cert_pem, '')
		FROM fusion_set_versions v LEFT JOIN cas c ON c.fusion_set = v.fusion_set WHERE v.fusion_set = ?`
	args := []any{set}
	if version > 0 {
		q += ` AND v.version = ?`
		args = append(args, version)
	}
	var s SetSummary
	v, err := scanSetVersion(db.QueryRow(ctx, q+` ORDER BY v.version DESC LIMIT 1`, args...), true, &s.CACertPEM)
	if err != nil {
		return SetSummary{}, setErr(err, set, version)
	}
	s.SetVersion = v
	return s, nil
}

// ListSets returns the newest version of each published set whose id is
// after afterID, by id, at most limit (documents left out).
func (db *DB) ListSets(ctx context.Context, afterID string, limit int) ([]SetSummary, error) {
	rows, err := db.Query(ctx, `SELECT v.fusion_set, v.version, v.sha256, v.created_ns, v.actor, v.comment, v.changes, COALESCE(c.cert_pem, '')
		FROM fusion_set_versions v
		JOIN (SELECT fusion_set, MAX(version) AS version FROM fusion_set_versions WHERE fusion_set > ?
			GROUP BY fusion_set ORDER BY fusion_set LIMIT ?) m ON m.fusion_set = v.fusion_set AND m.version = v.version
		LEFT JOIN cas c ON c.fusion_set = v.fusion_set
		ORDER BY v.fusion_set`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing fusion sets: %w", err)
	}
	defer rows.Close()
	var out []SetSummary
	for rows.Next() {
		var s SetSummary
		v, err := scanSetVersion(rows, false, &s.CACertPEM)
		if err != nil {
			return nil, fmt.Errorf("listing fusion sets: %w", err)
		}
		s.SetVersion = v
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing fusion sets: %w", err)
	}
	return out, nil
}

// SetHistory returns a set's versions older than beforeVersion (0: from
// the newest), newest first, at most limit, without documents.
func (db *DB) SetHistory(ctx context.Context, set string, beforeVersion int64, limit int) ([]SetVersion, error) {
	q := `SELECT ` + setColumns + ` FROM fusion_set_versions WHERE fusion_set = ?`
	args := []any{set}
	if beforeVersion > 0 {
		q += ` AND version < ?`
		args = append(args, beforeVersion)
	}
	rows, err := db.Query(ctx, q+` ORDER BY version DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("fusion set %q history: %w", set, err)
	}
	defer rows.Close()
	var out []SetVersion
	for rows.Next() {
		v, err := scanSetVersion(rows, false)
		if err != nil {
			return nil, fmt.Errorf("fusion set %q history: %w", set, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fusion set %q history: %w", set, err)
	}
	return out, nil
}
