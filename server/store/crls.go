package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// CRL is the current signed revocation list of a fusion set.
type CRL struct {
	FusionSet  string
	Number     int64 // strictly increasing per set, from 1
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	ETag       string // hex SHA-256 of DER
}

// CRL returns the current CRL of set (ErrNotFound wrapped when the set has
// none yet).
func (db *DB) CRL(ctx context.Context, set string) (CRL, error) {
	c := CRL{FusionSet: set}
	var this, next int64
	err := db.QueryRow(ctx, `SELECT number, der, this_update_ns, next_update_ns, etag FROM crls WHERE fusion_set = ? AND number > 0`, set).
		Scan(&c.Number, &c.DER, &this, &next, &c.ETag)
	if errors.Is(err, sql.ErrNoRows) {
		return CRL{}, fmt.Errorf("CRL of %s: %w", set, ErrNotFound)
	}
	if err != nil {
		return CRL{}, fmt.Errorf("crls: reading %s: %w", set, err)
	}
	c.ThisUpdate, c.NextUpdate = Time(this), Time(next)
	return c, nil
}

// LockCRL takes the CRL row of set for the rest of tx and returns the
// current CRL (Number 0 when the set has none yet). Whoever holds the lock
// signs the next number: SQLite has a single writer already, PostgreSQL
// instances queue on the row lock, and the one that waited reads the
// number the other committed. So numbers never repeat or go backwards,
// whichever instance signs.
func (tx *Tx) LockCRL(ctx context.Context, set string) (CRL, error) {
	// A placeholder row (number 0) makes the first CRL of a set lockable
	// too; it is replaced by PutCRL in the same transaction, so nobody
	// else ever reads it (CRL skips number 0 anyway).
	if _, err := tx.Exec(ctx, `INSERT INTO crls (fusion_set, number, der, this_update_ns, next_update_ns, etag)
		VALUES (?, 0, ?, 0, 0, '') ON CONFLICT (fusion_set) DO NOTHING`, set, []byte{}); err != nil {
		return CRL{}, fmt.Errorf("crls: locking %s: %w", set, err)
	}
	q := `SELECT number, der, this_update_ns, next_update_ns, etag FROM crls WHERE fusion_set = ?`
	if tx.Dialect() == Postgres {
		q += ` FOR UPDATE`
	}
	c := CRL{FusionSet: set}
	var this, next int64
	if err := tx.QueryRow(ctx, q, set).Scan(&c.Number, &c.DER, &this, &next, &c.ETag); err != nil {
		return CRL{}, fmt.Errorf("crls: locking %s: %w", set, err)
	}
	c.ThisUpdate, c.NextUpdate = Time(this), Time(next)
	return c, nil
}

// PutCRL stores c as the set's current CRL. Call it after LockCRL in the
// same transaction, with c.Number above the locked one.
func (tx *Tx) PutCRL(ctx context.Context, c CRL) error {
	res, err := tx.Exec(ctx, `UPDATE crls SET number = ?, der = ?, this_update_ns = ?, next_update_ns = ?, etag = ?
		WHERE fusion_set = ? AND number < ?`, c.Number, c.DER, NS(c.ThisUpdate), NS(c.NextUpdate), c.ETag, c.FusionSet, c.Number)
	if err != nil {
		return fmt.Errorf("crls: storing %s: %w", c.FusionSet, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("crls: storing %s number %d: not locked or not newer (%v)", c.FusionSet, c.Number, err)
	}
	return nil
}

// CRLsDue lists the fusion sets with a CA whose CRL must be (re-)signed at
// now (CRL.Due). Sets are few, so the rule is applied here, once, rather
// than also in SQL.
func (db *DB) CRLsDue(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT c.fusion_set, COALESCE(r.number, 0), COALESCE(r.this_update_ns, 0), COALESCE(r.next_update_ns, 0)
		FROM cas c LEFT JOIN crls r ON r.fusion_set = c.fusion_set ORDER BY c.fusion_set`)
	if err != nil {
		return nil, fmt.Errorf("crls: listing due: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c CRL
		var this, next int64
		if err := rows.Scan(&c.FusionSet, &c.Number, &this, &next); err != nil {
			return nil, fmt.Errorf("crls: listing due: %w", err)
		}
		c.ThisUpdate, c.NextUpdate = Time(this), Time(next)
		if c.Due(now) {
			out = append(out, c.FusionSet)
		}
	}
	return out, rows.Err()
}

// Due reports whether c must be re-signed at now: there is none yet
// (Number 0), or less than half its validity is left, so gateways never
// hold a CRL close to its NextUpdate.
func (c CRL) Due(now time.Time) bool {
	return c.Number == 0 || 2*c.NextUpdate.Sub(now) < c.NextUpdate.Sub(c.ThisUpdate)
}
