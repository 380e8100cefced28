package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Certificate kinds: a build's certificate (issued through the builds
// API) and an install's (issued by enrollment for a key made on the
// device).
const (
	KindBuild   = "build"
	KindInstall = "install"
)

// Profiles besides a build bundle's (modern, legacy, both): an install
// certificate's key never left the device; an imported build certificate
// was issued before its CA came to this server and recorded at its first
// enrollment (the server never saw its bundle).
const (
	ProfileDevice   = "device"
	ProfileImported = "imported"
)

// Certificate statuses, as the API filters and reports them. A revoked
// certificate is "revoked" whether it has expired since or not.
const (
	StatusValid   = "valid"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Certificate is one issued certificate and its certified record.
type Certificate struct {
	Serial    string // pki.FormatSerial
	SHA256    string
	FusionSet string
	AppID     string
	BuildID   string
	Kind      string
	Profile   string // modern | legacy | both
	NotBefore time.Time
	NotAfter  time.Time
	IssuedAt  time.Time
	IssuedBy  string
	CertPEM   string
	Record    string // the signed record file's bytes
	// Revocation; zero/empty while valid.
	RevokedAt        time.Time
	RevocationReason string
	RevokedBy        string
	// InstallID and BuildSerial are set for install certificates: the
	// install, and the build certificate it enrolled with.
	InstallID   string
	BuildSerial string
}

// Status is the certificate's status at now.
func (c *Certificate) Status(now time.Time) string {
	switch {
	case !c.RevokedAt.IsZero():
		return StatusRevoked
	case !now.Before(c.NotAfter):
		return StatusExpired
	}
	return StatusValid
}

const insertCertificate = `INSERT INTO certificates (serial, sha256, fusion_set, app_id, build_id, kind, profile,
	not_before_ns, not_after_ns, issued_ns, issued_by, cert_pem, record, install_id, build_serial)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// certValues are insertCertificate's arguments.
func certValues(c Certificate) []any {
	return []any{c.Serial, c.SHA256, c.FusionSet, c.AppID, c.BuildID, c.Kind, c.Profile,
		NS(c.NotBefore), NS(c.NotAfter), NS(c.IssuedAt), c.IssuedBy, c.CertPEM, c.Record,
		nullString(c.InstallID), nullString(c.BuildSerial)}
}

// nullString stores "" as NULL (the partial indexes skip NULLs).
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const certColumns = `serial, sha256, fusion_set, app_id, build_id, kind, profile, not_before_ns, not_after_ns,
	issued_ns, issued_by, revoked_ns, revocation_reason, revoked_by, install_id, build_serial`

// InsertCertificate stores a newly issued certificate (in the issuance's
// transaction, next to its audit entry).
func (tx *Tx) InsertCertificate(ctx context.Context, c Certificate) error {
	_, err := tx.Exec(ctx, insertCertificate, certValues(c)...)
	if err != nil {
		return fmt.Errorf("certificates: inserting %s: %w", c.Serial, err)
	}
	return nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanCertificate reads certColumns (plus extra destinations after them).
func scanCertificate(s scanner, c *Certificate, extra ...any) error {
	var nb, na, issued int64
	var revoked sql.NullInt64
	var reason, by, install, buildSerial sql.NullString
	dest := append([]any{&c.Serial, &c.SHA256, &c.FusionSet, &c.AppID, &c.BuildID, &c.Kind, &c.Profile,
		&nb, &na, &issued, &c.IssuedBy, &revoked, &reason, &by, &install, &buildSerial}, extra...)
	if err := s.Scan(dest...); err != nil {
		return err
	}
	c.InstallID, c.BuildSerial = install.String, buildSerial.String
	c.NotBefore, c.NotAfter, c.IssuedAt = Time(nb), Time(na), Time(issued)
	c.RevokedAt, c.RevocationReason, c.RevokedBy = NullTime(revoked), reason.String, by.String
	return nil
}

// Certificate returns one certificate with its PEM and record.
func (db *DB) Certificate(ctx context.Context, serial string) (Certificate, error) {
	var c Certificate
	row := db.QueryRow(ctx, `SELECT `+certColumns+`, cert_pem, record FROM certificates WHERE serial = ?`, serial)
	err := scanCertificate(row, &c, &c.CertPEM, &c.Record)
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Certificate{}, fmt.Errorf("certificates: reading %s: %w", serial, err)
	}
	return c, nil
}

// CertFilter selects certificates for a list page. Zero values do not
// filter. Pages run newest first on (issued_ns, serial).
type CertFilter struct {
	FusionSet, AppID, BuildID string
	Status                    string // StatusValid, StatusRevoked, StatusExpired or ""
	IssuedAfter               time.Time
	IssuedBefore              time.Time
	ExpiresAfter              time.Time
	ExpiresBefore             time.Time
	// Now decides valid versus expired.
	Now time.Time
	// After continues a listing after this position (keyset).
	After *CertPosition
	Limit int
}

// CertPosition is a place in the certificate order.
type CertPosition struct {
	IssuedNS int64  `json:"i"`
	Serial   string `json:"s"`
}

// ListCertificates returns up to f.Limit certificates (without PEM and
// record), newest first. The position of the last one continues the list.
func (db *DB) ListCertificates(ctx context.Context, f CertFilter) ([]Certificate, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.FusionSet != "" {
		add("fusion_set = ?", f.FusionSet)
	}
	if f.AppID != "" {
		add("app_id = ?", f.AppID)
	}
	if f.BuildID != "" {
		add("build_id = ?", f.BuildID)
	}
	switch f.Status {
	case "":
	case StatusValid:
		add("revoked_ns IS NULL AND not_after_ns > ?", NS(f.Now))
	case StatusRevoked:
		add("revoked_ns IS NOT NULL")
	case StatusExpired:
		add("revoked_ns IS NULL AND not_after_ns <= ?", NS(f.Now))
	default:
		return nil, fmt.Errorf("certificates: unknown status %q", f.Status)
	}
	if !f.IssuedAfter.IsZero() {
		add("issued_ns >= ?", NS(f.IssuedAfter))
	}
	if !f.IssuedBefore.IsZero() {
		add("issued_ns < ?", NS(f.IssuedBefore))
	}
	if !f.ExpiresAfter.IsZero() {
		add("not_after_ns >= ?", NS(f.ExpiresAfter))
	}
	if !f.ExpiresBefore.IsZero() {
		add("not_after_ns < ?", NS(f.ExpiresBefore))
	}
	if f.After != nil {
		// Row-value comparison: both databases walk the (…, issued_ns,
		// serial) indexes backwards from the position.
		add("(issued_ns, serial) < (?, ?)", f.After.IssuedNS, f.After.Serial)
	}
	q := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY issued_ns DESC, serial DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("certificates: listing: %w", err)
	}
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		var c Certificate
		if err := scanCertificate(rows, &c); err != nil {
			return nil, fmt.Errorf("certificates: listing: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("certificates: listing: %w", err)
	}
	return out, nil
}

// CertificatesBySerial reads the certificates of serials in tx (the
// revocation's transaction); serials it does not know are absent from the
// map.
func (tx *Tx) CertificatesBySerial(ctx context.Context, serials []string) (map[string]Certificate, error) {
	out := make(map[string]Certificate, len(serials))
	// Chunks keep every statement under the databases' parameter limits.
	const chunk = 500
	for start := 0; start < len(serials); start += chunk {
		part := serials[start:min(start+chunk, len(serials))]
		q := `SELECT ` + certColumns + ` FROM certificates WHERE serial IN (?` + strings.Repeat(", ?", len(part)-1) + `)`
		args := make([]any, len(part))
		for i, s := range part {
			args[i] = s
		}
		if err := tx.collect(ctx, out, q, args...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// BuildCertificates reads every certificate of one build in tx.
func (tx *Tx) BuildCertificates(ctx context.Context, set, app, build string) (map[string]Certificate, error) {
	out := map[string]Certificate{}
	err := tx.collect(ctx, out, `SELECT `+certColumns+` FROM certificates WHERE fusion_set = ? AND app_id = ? AND build_id = ?`, set, app, build)
	return out, err
}

func (tx *Tx) collect(ctx context.Context, out map[string]Certificate, q string, args ...any) error {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Certificate
		if err := scanCertificate(rows, &c); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		out[c.Serial] = c
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	return nil
}

// RevokeCertificate marks serial revoked unless it is already; revoked
// reports whether this call revoked it.
func (tx *Tx) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason, by string) (revoked bool, err error) {
	res, err := tx.Exec(ctx, `UPDATE certificates SET revoked_ns = ?, revocation_reason = ?, revoked_by = ?
		WHERE serial = ? AND revoked_ns IS NULL`, NS(at), reason, by, serial)
	if err != nil {
		return false, fmt.Errorf("certificates: revoking %s: %w", serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("certificates: revoking %s: %w", serial, err)
	}
	return n == 1, nil
}

// Revoked is one revoked certificate, as a CRL lists it.
type Revoked struct {
	Serial    string
	RevokedAt time.Time
	Reason    string
}

// RevokedCertificates lists the revoked certificates of set that have not
// expired by notExpiredAt: a CRL may drop expired certificates (RFC 5280
// 3.3), since gateways refuse them for their dates, and that keeps it from
// growing forever.
func (tx *Tx) RevokedCertificates(ctx context.Context, set string, notExpiredAt time.Time) ([]Revoked, error) {
	rows, err := tx.Query(ctx, `SELECT serial, revoked_ns, revocation_reason FROM certificates
		WHERE fusion_set = ? AND revoked_ns IS NOT NULL AND not_after_ns > ? ORDER BY serial`, set, NS(notExpiredAt))
	if err != nil {
		return nil, fmt.Errorf("certificates: revoked of %s: %w", set, err)
	}
	defer rows.Close()
	var out []Revoked
	for rows.Next() {
		var r Revoked
		var ns int64
		var reason sql.NullString
		if err := rows.Scan(&r.Serial, &ns, &reason); err != nil {
			return nil, fmt.Errorf("certificates: revoked of %s: %w", set, err)
		}
		r.RevokedAt, r.Reason = Time(ns), reason.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("certificates: revoked of %s: %w", set, err)
	}
	return out, nil
}

// CertificateInsert is a prepared insert for filling a database in bulk
// (benchmarks, restores of foreign data): one statement, many rows, in the
// caller's transaction.
func (tx *Tx) CertificateInsert(ctx context.Context) (func(c Certificate) error, func() error, error) {
	st, err := tx.Prepare(ctx, insertCertificate)
	if err != nil {
		return nil, nil, fmt.Errorf("certificates: %w", err)
	}
	insert := func(c Certificate) error {
		_, err := st.ExecContext(ctx, certValues(c)...)
		if err != nil {
			return fmt.Errorf("certificates: inserting %s: %w", c.Serial, err)
		}
		return nil
	}
	return insert, st.Close, nil
}
