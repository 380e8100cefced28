package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// CARow is a fusion set's CA as stored: the key only sealed with the KEK.
type CARow struct {
	FusionSet   string
	CertPEM     string
	KeySealed   []byte
	Fingerprint string // hex SHA-256 of the certificate
	NotAfter    time.Time
	Created     time.Time
	Source      string // CASourceGenerated or CASourceImported
}

// Where a CA came from.
const (
	CASourceGenerated = "generated"
	CASourceImported  = "imported"
)

const caColumns = `fusion_set, cert_pem, key_sealed, fingerprint, not_after_ns, created_ns, source`

func scanCA(s interface{ Scan(...any) error }, set string) (CARow, error) {
	var c CARow
	var notAfter, created int64
	err := s.Scan(&c.FusionSet, &c.CertPEM, &c.KeySealed, &c.Fingerprint, &notAfter, &created, &c.Source)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return CARow{}, fmt.Errorf("CA of fusion set %q: %w", set, ErrNotFound)
	case err != nil:
		return CARow{}, fmt.Errorf("CA of fusion set %q: %w", set, err)
	}
	c.NotAfter, c.Created = Time(notAfter), Time(created)
	return c, nil
}

// CAOf reads the CA of a fusion set (ErrNotFound wrapped when none).
func (db *DB) CAOf(ctx context.Context, set string) (CARow, error) {
	return scanCA(db.QueryRow(ctx, `SELECT `+caColumns+` FROM cas WHERE fusion_set = ?`, set), set)
}

// CAOf reads the CA of a fusion set inside tx.
func (tx *Tx) CAOf(ctx context.Context, set string) (CARow, error) {
	return scanCA(tx.QueryRow(ctx, `SELECT `+caColumns+` FROM cas WHERE fusion_set = ?`, set), set)
}

// ListCAs returns every CA, by fusion set.
func (db *DB) ListCAs(ctx context.Context) ([]CARow, error) {
	rows, err := db.Query(ctx, `SELECT `+caColumns+` FROM cas ORDER BY fusion_set`)
	if err != nil {
		return nil, fmt.Errorf("listing CAs: %w", err)
	}
	defer rows.Close()
	var out []CARow
	for rows.Next() {
		c, err := scanCA(rows, "")
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing CAs: %w", err)
	}
	return out, nil
}

// InsertCA stores a fusion set's CA unless the set has one already; it
// reports whether this row was stored. A set's CA is never replaced: the
// certificates it issued would lose their issuer.
func (tx *Tx) InsertCA(ctx context.Context, c CARow) (bool, error) {
	res, err := tx.Exec(ctx, `INSERT INTO cas (`+caColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fusion_set) DO NOTHING`,
		c.FusionSet, c.CertPEM, c.KeySealed, c.Fingerprint, NS(c.NotAfter), NS(c.Created), c.Source)
	if err != nil {
		return false, fmt.Errorf("storing the CA of fusion set %q: %w", c.FusionSet, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("storing the CA of fusion set %q: %w", c.FusionSet, err)
	}
	return n == 1, nil
}
