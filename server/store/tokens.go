package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// TokenRow is one API token as stored: the secret only as its SHA-256.
type TokenRow struct {
	ID        string
	Name      string
	Hash      []byte
	Scopes    string // comma list, sorted
	Created   time.Time
	Expires   time.Time // zero: never
	LastUsed  time.Time // zero: never used
	Revoked   time.Time // zero: not revoked
	CreatedBy string
}

const tokenColumns = `id, name, hash, scopes, created_ns, expires_ns, last_used_ns, revoked_ns, created_by`

func scanToken(s interface{ Scan(...any) error }) (TokenRow, error) {
	var t TokenRow
	var created int64
	var expires, lastUsed, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.Name, &t.Hash, &t.Scopes, &created, &expires, &lastUsed, &revoked, &t.CreatedBy); err != nil {
		return TokenRow{}, err
	}
	t.Created = Time(created)
	t.Expires, t.LastUsed, t.Revoked = NullTime(expires), NullTime(lastUsed), NullTime(revoked)
	return t, nil
}

// InsertToken stores a new token. A taken name or id is a unique
// violation (IsUniqueViolation).
func (tx *Tx) InsertToken(ctx context.Context, t TokenRow) error {
	_, err := tx.Exec(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)`,
		t.ID, t.Name, t.Hash, t.Scopes, NS(t.Created), NullNS(t.Expires), t.CreatedBy)
	if err != nil {
		return fmt.Errorf("tokens: inserting %q: %w", t.Name, err)
	}
	return nil
}

// TokenByID reads one token (ErrNotFound wrapped when there is none).
func (db *DB) TokenByID(ctx context.Context, id string) (TokenRow, error) {
	t, err := scanToken(db.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
	return t, tokenErr(err, id)
}

// TokenByIDOrName reads the token whose id or name is key, in tx.
func (tx *Tx) TokenByIDOrName(ctx context.Context, key string) (TokenRow, error) {
	t, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ? OR name = ? ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END LIMIT 1`, key, key, key))
	return t, tokenErr(err, key)
}

func tokenErr(err error, key string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("token %q: %w", key, ErrNotFound)
	}
	return fmt.Errorf("tokens: reading %q: %w", key, err)
}

// ListTokens returns every token, oldest first.
func (db *DB) ListTokens(ctx context.Context) ([]TokenRow, error) {
	rows, err := db.Query(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_ns, id`)
	if err != nil {
		return nil, fmt.Errorf("tokens: listing: %w", err)
	}
	defer rows.Close()
	var out []TokenRow
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("tokens: listing: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tokens: listing: %w", err)
	}
	return out, nil
}

// RevokeToken marks token id revoked at t (a revoked token stays revoked:
// the first time is kept).
func (tx *Tx) RevokeToken(ctx context.Context, id string, t time.Time) error {
	if _, err := tx.Exec(ctx, `UPDATE tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL`, NS(t), id); err != nil {
		return fmt.Errorf("tokens: revoking %q: %w", id, err)
	}
	return nil
}

// TouchToken records a use of token id at t unless a use at or after
// notBefore is already recorded (so concurrent requests and several
// instances write it rarely).
func (db *DB) TouchToken(ctx context.Context, id string, t, notBefore time.Time) error {
	if _, err := db.Exec(ctx, `UPDATE tokens SET last_used_ns = ? WHERE id = ? AND (last_used_ns IS NULL OR last_used_ns < ?)`,
		NS(t), id, NS(notBefore)); err != nil {
		return fmt.Errorf("tokens: recording use of %q: %w", id, err)
	}
	return nil
}
