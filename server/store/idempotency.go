package store

import (
	"context"
	"fmt"
	"time"
)

// States of an idempotency key.
const (
	IdemPending = "pending" // the first request is running
	IdemDone    = "done"    // its response is stored
)

// Idempotency is the stored state of one token's Idempotency-Key.
type Idempotency struct {
	RequestSHA256 string
	State         string
	Status        int
	Sealed        []byte // the response body, sealed with the KEK
	Created       time.Time
}

// ClaimIdempotency claims (tokenID, key) for a request whose hash is
// reqHash: it returns nil when this request now owns the key (state
// pending), or the key's existing state. A row created before expireBefore
// is forgotten first (keys live 24 hours), and so is a pending row created
// before staleBefore: its request died with its instance before
// committing anything, since a response is stored in the transaction of
// the change it reports (CompleteIdempotency).
func (db *DB) ClaimIdempotency(ctx context.Context, tokenID, key, reqHash string, now, expireBefore, staleBefore time.Time) (*Idempotency, error) {
	var existing *Idempotency
	err := db.Tx(ctx, func(tx *Tx) error {
		existing = nil
		if _, err := tx.Exec(ctx, `DELETE FROM idempotency WHERE token_id = ? AND key = ?
			AND (created_ns < ? OR (state = ? AND created_ns < ?))`,
			tokenID, key, NS(expireBefore), IdemPending, NS(staleBefore)); err != nil {
			return err
		}
		// ON CONFLICT DO NOTHING instead of catching the unique violation,
		// which would abort a PostgreSQL transaction. A PostgreSQL instance
		// racing another waits here for the other's commit, then reads its row.
		res, err := tx.Exec(ctx, `INSERT INTO idempotency (token_id, key, request_sha256, state, status, created_ns)
			VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (token_id, key) DO NOTHING`, tokenID, key, reqHash, IdemPending, NS(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		var e Idempotency
		var created int64
		var sealed []byte
		if err := tx.QueryRow(ctx, `SELECT request_sha256, state, status, response_sealed, created_ns FROM idempotency
			WHERE token_id = ? AND key = ?`, tokenID, key).Scan(&e.RequestSHA256, &e.State, &e.Status, &sealed, &created); err != nil {
			return err
		}
		e.Sealed, e.Created = sealed, Time(created)
		existing = &e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency: claiming a key: %w", err)
	}
	return existing, nil
}

// CompleteIdempotency stores the response of a claimed key, in the
// transaction of the change the response reports, so a committed change
// always has its response stored and a rolled back one never does.
func (tx *Tx) CompleteIdempotency(ctx context.Context, tokenID, key string, status int, sealed []byte) error {
	res, err := tx.Exec(ctx, `UPDATE idempotency SET state = ?, status = ?, response_sealed = ?
		WHERE token_id = ? AND key = ? AND state = ?`, IdemDone, status, sealed, tokenID, key, IdemPending)
	if err != nil {
		return fmt.Errorf("idempotency: storing the response: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		// The claim expired and someone else took the key over: do not
		// commit a second change under it.
		return fmt.Errorf("idempotency: the key's claim was lost (%v)", err)
	}
	return nil
}

// ReleaseIdempotency forgets a pending claim whose request failed, so the
// client may retry with the same key.
func (db *DB) ReleaseIdempotency(ctx context.Context, tokenID, key string) error {
	if _, err := db.Exec(ctx, `DELETE FROM idempotency WHERE token_id = ? AND key = ? AND state = ?`, tokenID, key, IdemPending); err != nil {
		return fmt.Errorf("idempotency: releasing a key: %w", err)
	}
	return nil
}

// PurgeIdempotency deletes every key created before before (the server's
// background loop; ClaimIdempotency forgets expired keys on the way too).
func (db *DB) PurgeIdempotency(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.Exec(ctx, `DELETE FROM idempotency WHERE created_ns < ?`, NS(before))
	if err != nil {
		return 0, fmt.Errorf("idempotency: purging: %w", err)
	}
	n, _ := res.RowsAffected() // both drivers report it
	return n, nil
}
