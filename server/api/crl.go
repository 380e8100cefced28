package api

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
	"github.com/mccgate/mcc/server/store"
)

// crlValidity is how long a signed CRL is valid (NextUpdate - ThisUpdate).
// RefreshCRLs re-signs at half of it, so a gateway fetching every few
// seconds always holds a CRL days away from stale.
const crlValidity = pki.DefaultCRLValidity

// actorServer is the audit actor of what the server does on its own.
const actorServer = "server"

func (a *API) routesCRL() {
	a.route("GET", "/v1/fusion-sets/{set}/crl.pem", "", a.crlPEM)
	a.route("GET", "/v1/fusion-sets/{set}/crl.der", "", a.crlDER)
}

func (a *API) crlPEM(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	return a.serveCRL(w, r, "application/x-pem-file", func(der []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	})
}

func (a *API) crlDER(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	return a.serveCRL(w, r, "application/pkix-crl", func(der []byte) []byte { return der })
}

// serveCRL answers the set's current CRL, or 304 when the client's
// If-None-Match names it. The ETag is the DER's SHA-256, the same for both
// encodings, so a gateway may switch between them and still get a 304.
// Gateways must revalidate every time (no-cache): a revocation shows at
// their next fetch.
func (a *API) serveCRL(w http.ResponseWriter, r *http.Request, contentType string, encode func([]byte) []byte) error {
	set := r.PathValue("set")
	if certid.CheckSetID(set) != nil {
		return notFound("no fusion set " + quoteForDetail(set))
	}
	crl, err := a.currentCRL(r.Context(), set)
	if err != nil {
		return err
	}
	etag := `"` + crl.ETag + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if ifNoneMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(encode(crl.DER))
	return err
}

// ifNoneMatches implements If-None-Match for GET: "*" or any listed tag,
// weak or strong (RFC 9110 13.1.2 uses the weak comparison).
func ifNoneMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// currentCRL returns the set's stored CRL. A set with a CA but no CRL yet
// (no revocation so far) gets its first, empty CRL signed here, so a
// gateway configured before the first revocation has a list to load.
func (a *API) currentCRL(ctx context.Context, set string) (store.CRL, error) {
	crl, err := a.DB.CRL(ctx, set)
	if !errors.Is(err, store.ErrNotFound) {
		return crl, err
	}
	err = a.DB.Tx(ctx, func(tx *store.Tx) error {
		var err error
		crl, err = a.signCRL(ctx, tx, set, actorServer, true)
		return err
	})
	if errors.Is(err, authority.ErrNoCA) {
		return store.CRL{}, notFound("fusion set " + quoteForDetail(set) + " has no CA on this server")
	}
	return crl, err
}

// signCRL signs the next CRL of set in tx, listing every revoked
// certificate of the set that has not expired, and records it in the
// audit log. With onlyIfDue it keeps the current CRL when another caller
// (or instance) signed one that is not due yet. The CRL row stays locked
// until tx ends, so numbers strictly increase across instances.
func (a *API) signCRL(ctx context.Context, tx *store.Tx, set, actor string, onlyIfDue bool) (store.CRL, error) {
	ca, err := a.Authorities.CA(ctx, set)
	if err != nil {
		return store.CRL{}, err
	}
	cur, err := tx.LockCRL(ctx, set)
	if err != nil {
		return store.CRL{}, err
	}
	now := a.Now().UTC()
	if onlyIfDue && !cur.Due(now) {
		return cur, nil
	}
	revoked, err := tx.RevokedCertificates(ctx, set, now)
	if err != nil {
		return store.CRL{}, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, rv := range revoked {
		serial, err := pki.ParseSerial(rv.Serial)
		if err != nil {
			return store.CRL{}, fmt.Errorf("CRL of %s: stored serial %q: %w", set, rv.Serial, err)
		}
		code, err := pki.ParseReason(rv.Reason)
		if err != nil {
			return store.CRL{}, fmt.Errorf("CRL of %s: stored reason of %s: %w", set, rv.Serial, err)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: rv.RevokedAt, ReasonCode: code})
	}
	ca.Now = func() time.Time { return now }
	next := cur.Number + 1
	der, err := ca.SignCRL(big.NewInt(next), entries, crlValidity)
	if err != nil {
		return store.CRL{}, err
	}
	sum := sha256.Sum256(der)
	crl := store.CRL{FusionSet: set, Number: next, DER: der, ThisUpdate: now, NextUpdate: now.Add(crlValidity), ETag: hex.EncodeToString(sum[:])}
	if err := tx.PutCRL(ctx, crl); err != nil {
		return store.CRL{}, err
	}
	_, err = tx.AppendAudit(ctx, store.AuditEntry{Time: now, Actor: actor, Action: store.AuditCRLPublish, Subject: "fusion-set/" + set,
		Detail: map[string]any{"number": next, "entries": len(entries), "nextUpdate": crl.NextUpdate}})
	return crl, err
}

// RefreshCRLs re-signs every CRL that is due (none yet, or past half its
// validity). server.go's background loop calls it every minute; with
// several instances each re-checks under the row lock, so a due CRL is
// re-signed once.
func (a *API) RefreshCRLs(ctx context.Context) error {
	due, err := a.DB.CRLsDue(ctx, a.Now())
	if err != nil {
		return err
	}
	var errs []error
	for _, set := range due {
		err := a.DB.Tx(ctx, func(tx *store.Tx) error {
			_, err := a.signCRL(ctx, tx, set, actorServer, true)
			return err
		})
		if err != nil {
			a.Log.Error("re-signing a CRL", zap.String("fusion_set", set), zap.Error(err))
			errs = append(errs, fmt.Errorf("CRL of %s: %w", set, err))
		}
	}
	return errors.Join(errs...)
}
