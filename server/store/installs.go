package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Enrollment is one install certificate handed out: by an enrollment (a
// build certificate traded for an install certificate) or by a renewal
// (Renews names the install certificate it replaced).
type Enrollment struct {
	Serial      string // the install certificate issued
	FusionSet   string
	BuildSerial string // the build certificate the install enrolled with
	Address     string // the client's address by the set's prefixes
	InstallID   string
	Renews      string // "" for an enrollment
	Time        time.Time
}

// ErrRenewed is returned (wrapped) by InsertEnrollment when the install
// certificate a renewal replaces was renewed before: one certificate
// renews once, so a copied install certificate cannot fork into two live
// ones.
var ErrRenewed = errors.New("the install certificate was renewed already")

// EnrollmentCounts are the enrollments (renewals excluded) within a window.
type EnrollmentCounts struct {
	PerBuild, PerAddress int
}

// LockEnrollment serializes the enrollments of one build certificate and
// of one address across PostgreSQL instances, for the rest of tx, so a
// limit checked with CountEnrollments holds exactly. SQLite has one writer
// at a time already. The build lock is always taken first, so two
// enrollments never wait on each other in a cycle.
func (tx *Tx) LockEnrollment(ctx context.Context, set, buildSerial, address string) error {
	if tx.dialect != Postgres {
		return nil
	}
	for _, key := range []string{"build\x00" + buildSerial, "address\x00" + set + "\x00" + address} {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext(?))`, key); err != nil {
			return fmt.Errorf("enrollments: locking: %w", err)
		}
	}
	return nil
}

// CountEnrollments counts the enrollments since since of one build
// certificate and of one address in set, inside tx: with LockEnrollment
// held, the count is exact.
func (tx *Tx) CountEnrollments(ctx context.Context, set, buildSerial, address string, since time.Time) (EnrollmentCounts, error) {
	return countEnrollments(ctx, tx, set, buildSerial, address, since)
}

// CountEnrollments is the same count outside a transaction: a cheap
// early look, so a request over a limit is refused before the work of
// checking an attestation and signing. Only the locked count decides.
func (db *DB) CountEnrollments(ctx context.Context, set, buildSerial, address string, since time.Time) (EnrollmentCounts, error) {
	return countEnrollments(ctx, db, set, buildSerial, address, since)
}

func countEnrollments(ctx context.Context, q rowQuerier, set, buildSerial, address string, since time.Time) (EnrollmentCounts, error) {
	var c EnrollmentCounts
	err := q.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM enrollments WHERE build_serial = ? AND renews IS NULL AND time_ns >= ?),
		(SELECT COUNT(*) FROM enrollments WHERE fusion_set = ? AND address = ? AND renews IS NULL AND time_ns >= ?)`,
		buildSerial, NS(since), set, address, NS(since)).Scan(&c.PerBuild, &c.PerAddress)
	if err != nil {
		return c, fmt.Errorf("enrollments: counting: %w", err)
	}
	return c, nil
}

// rowQuerier is what DB and Tx share for one-row reads.
type rowQuerier interface {
	QueryRow(ctx context.Context, q string, args ...any) *sql.Row
}

// InsertEnrollment records e. A renewal of a certificate renewed before
// is ErrRenewed.
func (tx *Tx) InsertEnrollment(ctx context.Context, e Enrollment) error {
	_, err := tx.Exec(ctx, `INSERT INTO enrollments (serial, fusion_set, build_serial, address, install_id, renews, time_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, e.Serial, e.FusionSet, e.BuildSerial, e.Address, e.InstallID, nullString(e.Renews), NS(e.Time))
	if err != nil && e.Renews != "" && IsUniqueViolation(err) {
		return fmt.Errorf("enrollments: renewing %s: %w", e.Renews, ErrRenewed)
	}
	if err != nil {
		return fmt.Errorf("enrollments: inserting %s: %w", e.Serial, err)
	}
	return nil
}

// InstallCertificates reads every certificate of one install of set.
func (tx *Tx) InstallCertificates(ctx context.Context, set, installID string) (map[string]Certificate, error) {
	out := map[string]Certificate{}
	err := tx.collect(ctx, out, `SELECT `+certColumns+` FROM certificates WHERE fusion_set = ? AND install_id = ?`, set, installID)
	return out, err
}

// LiveInstallCertificates reads the certificates of one install of set
// that are neither revoked nor expired at now, with their PEM, in serial
// order.
func (tx *Tx) LiveInstallCertificates(ctx context.Context, set, installID string, now time.Time) ([]Certificate, error) {
	rows, err := tx.Query(ctx, `SELECT `+certColumns+`, cert_pem FROM certificates
		WHERE fusion_set = ? AND install_id = ? AND revoked_ns IS NULL AND not_after_ns > ? ORDER BY serial`, set, installID, NS(now))
	if err != nil {
		return nil, fmt.Errorf("certificates of install %s: %w", installID, err)
	}
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		var c Certificate
		if err := scanCertificate(rows, &c, &c.CertPEM); err != nil {
			return nil, fmt.Errorf("certificates of install %s: %w", installID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("certificates of install %s: %w", installID, err)
	}
	return out, nil
}

// RenewalOf returns the install certificate that renewed serial, with its
// PEM (ErrNotFound when serial has not renewed).
func (db *DB) RenewalOf(ctx context.Context, serial string) (Certificate, error) {
	var next string
	err := db.QueryRow(ctx, `SELECT serial FROM enrollments WHERE renews = ?`, serial).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, fmt.Errorf("renewal of %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Certificate{}, fmt.Errorf("enrollments: reading the renewal of %s: %w", serial, err)
	}
	return db.Certificate(ctx, next)
}

// PurgeEnrollments deletes the enrollment rows older than before: the
// limits count within a window of at most a week, and a renewal is only
// ever checked against a certificate that is still valid.
func (db *DB) PurgeEnrollments(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.Exec(ctx, `DELETE FROM enrollments WHERE time_ns < ?`, NS(before))
	if err != nil {
		return 0, fmt.Errorf("enrollments: purging: %w", err)
	}
	return res.RowsAffected()
}
