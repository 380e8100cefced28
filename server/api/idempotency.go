package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
)

// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): a client
// that retries a POST with the same key gets the first response again
// instead of a second change (a CI job retried after a timeout must not
// get a second certificate). Keys belong to the token that sent them.
const (
	idemHeader     = "Idempotency-Key"
	replayedHeader = "Idempotent-Replayed"
	// idemTTL is how long a key and its response are kept.
	idemTTL = 24 * time.Hour
	// idemStale is when a pending key is taken to be abandoned: its
	// request died with its instance (requests take milliseconds).
	idemStale  = time.Minute
	maxIdemKey = 255
)

// idemClaim is a request's hold on its Idempotency-Key. A nil claim (no
// key sent) does nothing.
type idemClaim struct {
	a             *API
	tokenID, key  string
	requestSHA256 string
}

// claimIdempotency claims r's Idempotency-Key for this request. replayed
// is true when the key was used before by the same request and its
// response has been written again; otherwise the caller runs the request
// and stores its response with complete (in the change's transaction), or
// calls release when it fails. A key used by another request is a 422,
// and one still running a 409.
func (a *API) claimIdempotency(w http.ResponseWriter, r *http.Request, c *auth.Caller, body []byte) (claim *idemClaim, replayed bool, err error) {
	key, sent := r.Header[http.CanonicalHeaderKey(idemHeader)]
	if !sent {
		return nil, false, nil
	}
	if len(key) != 1 || !validIdemKey(key[0]) {
		return nil, false, invalidField(idemHeader, "must be one header of 1 to 255 printable ASCII characters")
	}
	sum := sha256.New()
	sum.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	sum.Write(body)
	claim = &idemClaim{a: a, tokenID: c.TokenID, key: key[0], requestSHA256: hex.EncodeToString(sum.Sum(nil))}
	now := a.Now()
	prev, err := a.DB.ClaimIdempotency(r.Context(), claim.tokenID, claim.key, claim.requestSHA256, now, now.Add(-idemTTL), now.Add(-idemStale))
	switch {
	case err != nil:
		return nil, false, err
	case prev == nil:
		return claim, false, nil
	case prev.RequestSHA256 != claim.requestSHA256:
		return nil, false, &Problem{Name: "idempotency-key-reused", Status: http.StatusUnprocessableEntity,
			Detail: "this Idempotency-Key was used for another request; use a new key for a new request"}
	case prev.State != store.IdemDone:
		return nil, false, &Problem{Name: "conflict", Status: http.StatusConflict,
			Detail: "the first request with this Idempotency-Key is still running; retry in a moment"}
	}
	resp, err := a.Keys.Open(prev.Sealed, claim.aad())
	if err != nil {
		return nil, false, err
	}
	w.Header().Set(replayedHeader, "true")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(prev.Status)
	_, err = w.Write(resp)
	return nil, true, err
}

// validIdemKey: 1 to 255 printable ASCII characters (space included).
func validIdemKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdemKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// aad binds a sealed response to its token and key: a response copied to
// another key's row does not open.
func (c *idemClaim) aad() []byte { return []byte("mcc-idem/v1:" + c.tokenID + ":" + c.key) }

// complete stores the response (sealed with the KEK: it may hold a bundle
// and its password) in tx, the transaction of the change it reports.
func (c *idemClaim) complete(ctx context.Context, tx *store.Tx, status int, body []byte) error {
	if c == nil {
		return nil
	}
	sealed, err := c.a.Keys.Seal(body, c.aad())
	if err != nil {
		return err
	}
	return tx.CompleteIdempotency(ctx, c.tokenID, c.key, status, sealed)
}

// release forgets the claim of a request that failed, so the client can
// retry with the same key. A failure to release only delays that retry
// until the claim goes stale.
func (c *idemClaim) release(ctx context.Context) {
	if c == nil {
		return
	}
	if err := c.a.DB.ReleaseIdempotency(context.WithoutCancel(ctx), c.tokenID, c.key); err != nil {
		c.a.Log.Warn("releasing an idempotency key", zap.Error(err))
	}
}

// PurgeIdempotency deletes idempotency keys older than their 24 hours
// (server.go's background loop calls it with RefreshCRLs).
func (a *API) PurgeIdempotency(ctx context.Context) error {
	_, err := a.DB.PurgeIdempotency(ctx, a.Now().Add(-idemTTL))
	return err
}
