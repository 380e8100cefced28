package store

import (
	"context"
	"fmt"
	"time"
)

// BuildSummary is one build certificate of a fusion set with what its
// installs did: the console's builds view.
type BuildSummary struct {
	Certificate // with Record
	// Installs is how many install ids enrolled with this build
	// certificate; LiveInstalls how many of their certificates are valid
	// at the query's time; RevokedInstalls how many were revoked.
	Installs, LiveInstalls, RevokedInstalls int64
}

// buildSummariesSQL counts each build's installs through the
// certificates_build_serial index, one build at a time: a page of builds
// costs their installs, never the whole table.
const buildSummariesSQL = `SELECT ` + certColumns + `, record,
	(SELECT COUNT(DISTINCT i.install_id) FROM certificates i WHERE i.build_serial = b.serial),
	(SELECT COUNT(*) FROM certificates i WHERE i.build_serial = b.serial AND i.revoked_ns IS NULL AND i.not_after_ns > ?),
	(SELECT COUNT(*) FROM certificates i WHERE i.build_serial = b.serial AND i.revoked_ns IS NOT NULL)
	FROM certificates b WHERE b.fusion_set = ? AND b.kind = 'build'
	ORDER BY b.issued_ns DESC, b.serial DESC LIMIT ?`

// BuildSummaries lists a fusion set's build certificates, newest first,
// with their installs counted at now.
func (db *DB) BuildSummaries(ctx context.Context, set string, now time.Time, limit int) ([]BuildSummary, error) {
	rows, err := db.Query(ctx, buildSummariesSQL, NS(now), set, limit)
	if err != nil {
		return nil, fmt.Errorf("builds of %s: %w", set, err)
	}
	defer rows.Close()
	var out []BuildSummary
	for rows.Next() {
		var b BuildSummary
		if err := scanCertificate(rows, &b.Certificate, &b.Record, &b.Installs, &b.LiveInstalls, &b.RevokedInstalls); err != nil {
			return nil, fmt.Errorf("builds of %s: %w", set, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
