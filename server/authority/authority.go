// Package authority keeps one certificate authority per fusion set. The CA
// key lives in the database sealed with the KEK (package keys); it is
// opened when a set's CA is first needed and kept in memory after that.
// A set's CA is never replaced, so the cache never goes stale.
package authority

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/keys"
	"github.com/mccgate/mcc/server/store"
)

// ErrNoCA is wrapped when a fusion set has no CA yet.
var ErrNoCA = errors.New("the fusion set has no CA")

// ErrCAExists is wrapped when Import meets a set that has a CA already.
var ErrCAExists = errors.New("the fusion set has a CA already")

// CAValidity is how long a generated CA is valid.
const CAValidity = pki.DefaultCAValidity

// keyAAD binds a sealed CA key to its fusion set: the sealed key of set A
// copied into set B's row does not open.
func keyAAD(set string) []byte { return []byte("mcc-ca-key/v1:" + set) }

// CAName is the common name of a generated CA.
func CAName(set string) string { return "mcc " + set + " client CA" }

// Authorities is the CA of every fusion set.
type Authorities struct {
	db   *store.DB
	keys *keys.Sealer
	now  func() time.Time

	mu    sync.Mutex
	cache map[string]*pki.CA
}

// New returns the authorities stored in db, keys sealed by s.
func New(db *store.DB, s *keys.Sealer, now func() time.Time) *Authorities {
	if now == nil {
		now = time.Now
	}
	return &Authorities{db: db, keys: s, now: now, cache: map[string]*pki.CA{}}
}

// CA returns the CA of a fusion set with its key (ErrNoCA wrapped when
// the set has none). Each call returns its own copy: callers may set Now.
func (a *Authorities) CA(ctx context.Context, set string) (*pki.CA, error) {
	a.mu.Lock()
	ca := a.cache[set]
	a.mu.Unlock()
	if ca == nil {
		row, err := a.db.CAOf(ctx, set)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("fusion set %q: %w", set, ErrNoCA)
		}
		if err != nil {
			return nil, err
		}
		if ca, err = a.open(row); err != nil {
			return nil, err
		}
		a.mu.Lock()
		a.cache[set] = ca
		a.mu.Unlock()
	}
	c := *ca
	c.Now = a.now
	return &c, nil
}

// Cert returns the CA certificate of a set without opening its key (for
// listings and ca.pem).
func (a *Authorities) Cert(ctx context.Context, set string) (*x509.Certificate, error) {
	row, err := a.db.CAOf(ctx, set)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("fusion set %q: %w", set, ErrNoCA)
	}
	if err != nil {
		return nil, err
	}
	return pki.ParseCertificatePEM([]byte(row.CertPEM))
}

// open unseals a stored CA and checks the key belongs to the certificate.
func (a *Authorities) open(row store.CARow) (*pki.CA, error) {
	keyPEM, err := a.keys.Open(row.KeySealed, keyAAD(row.FusionSet))
	if err != nil {
		return nil, fmt.Errorf("CA of fusion set %q: %w", row.FusionSet, err)
	}
	ca, err := pki.ParseCA([]byte(row.CertPEM), keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA of fusion set %q: %w", row.FusionSet, err)
	}
	return ca, nil
}

// Ensure returns the CA certificate of set, creating the CA in tx when the
// set has none (P-256, CAName, CAValidity), audited "ca.create". Two
// servers racing on one database end with one CA: the loser reads the
// winner's.
func (a *Authorities) Ensure(ctx context.Context, tx *store.Tx, set, actor string) (*x509.Certificate, error) {
	if err := certid.CheckSetID(set); err != nil {
		return nil, err
	}
	if row, err := tx.CAOf(ctx, set); err == nil {
		return pki.ParseCertificatePEM([]byte(row.CertPEM))
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	ca, err := pki.NewCA(pki.CAOptions{Name: CAName(set), KeyType: pki.KeyECDSAP256, ValidFor: CAValidity, Now: a.now})
	if err != nil {
		return nil, fmt.Errorf("creating the CA of fusion set %q: %w", set, err)
	}
	stored, err := a.store(ctx, tx, set, ca, store.CASourceGenerated)
	if err != nil {
		return nil, err
	}
	if !stored {
		row, err := tx.CAOf(ctx, set)
		if err != nil {
			return nil, err
		}
		return pki.ParseCertificatePEM([]byte(row.CertPEM))
	}
	if err := audit(ctx, tx, store.AuditCACreate, set, actor, ca.Cert, a.now()); err != nil {
		return nil, err
	}
	return ca.Cert, nil
}

// Import makes the CA of an `mcc ca init` directory the CA of set, audited
// "ca.import". A set that has a CA keeps it (ErrCAExists wrapped). Only
// the CLI calls this: the API never reads a path.
func (a *Authorities) Import(ctx context.Context, set, caDir, actor string) error {
	if err := certid.CheckSetID(set); err != nil {
		return err
	}
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return err
	}
	if now := a.now(); now.After(ca.Cert.NotAfter) {
		return fmt.Errorf("the CA in %s expired on %s", caDir, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	crl, err := importableCRL(ca, caDir)
	if err != nil {
		return err
	}
	return a.db.Tx(ctx, func(tx *store.Tx) error {
		// One CA per set, never shared: each set numbers its own CRL, and a
		// gateway keeps the highest CRL number it saw per issuer, so a
		// second set's lower-numbered CRL from the same CA would be refused
		// as older and its revocations never enforced.
		if _, err := tx.CAOf(ctx, set); err == nil {
			return fmt.Errorf("fusion set %q: %w", set, ErrCAExists)
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("fusion set %q: %w", set, err)
		}
		var other string
		err := tx.QueryRow(ctx, `SELECT fusion_set FROM cas WHERE fingerprint = ? AND fusion_set <> ?`, ca.Fingerprint(), set).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("the CA in %s is already the CA of fusion set %q: each set needs its own CA (mcc ca init)", caDir, other)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("fusion set %q: looking up the CA: %w", set, err)
		}
		stored, err := a.store(ctx, tx, set, ca, store.CASourceImported)
		if err != nil {
			return err
		}
		if !stored {
			return fmt.Errorf("fusion set %q: %w", set, ErrCAExists)
		}
		if crl != nil {
			if err := seedCRL(ctx, tx, set, crl); err != nil {
				return err
			}
		}
		return audit(ctx, tx, store.AuditCAImport, set, actor, ca.Cert, a.now())
	})
}

// importableCRL returns the CA directory's CRL (nil when it has none) and
// refuses a CA that revoked anything: the server's CRL lists the
// revocations in its database, so a certificate revoked in the directory
// would be valid again at the server's first CRL.
func importableCRL(ca *pki.CA, caDir string) (*x509.RevocationList, error) {
	crl, err := ca.LoadCRL()
	if errors.Is(err, fs.ErrNotExist) {
		crl = nil
	} else if err != nil {
		return nil, err
	}
	revoked := false
	if crl != nil {
		revoked = len(crl.RevokedCertificateEntries) > 0
		if !crl.Number.IsInt64() {
			return nil, fmt.Errorf("the CRL in %s has a number too large to continue", caDir)
		}
	}
	list, err := os.ReadFile(filepath.Join(caDir, pki.RevokedFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, line := range strings.Split(string(list), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			revoked = true
		}
	}
	if revoked {
		return nil, fmt.Errorf("the CA in %s has revoked certificates: the server cannot carry revocations made outside it, "+
			"so they would be valid again; import a CA that revoked nothing (or keep serving its CRL file)", caDir)
	}
	return crl, nil
}

// seedCRL makes the directory's CRL the set's current one, so the
// server's first CRL continues its numbering: a gateway that followed the
// file never sees the number go back.
func seedCRL(ctx context.Context, tx *store.Tx, set string, crl *x509.RevocationList) error {
	cur, err := tx.LockCRL(ctx, set)
	if err != nil {
		return err
	}
	n := crl.Number.Int64()
	if n <= cur.Number {
		return nil
	}
	sum := sha256.Sum256(crl.Raw)
	return tx.PutCRL(ctx, store.CRL{FusionSet: set, Number: n, DER: crl.Raw, ThisUpdate: crl.ThisUpdate,
		NextUpdate: crl.NextUpdate, ETag: hex.EncodeToString(sum[:])})
}

// store seals ca's key and inserts it; false when the set has a CA.
func (a *Authorities) store(ctx context.Context, tx *store.Tx, set string, ca *pki.CA, source string) (bool, error) {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return false, fmt.Errorf("CA of fusion set %q: %w", set, err)
	}
	sealed, err := a.keys.Seal(keyPEM, keyAAD(set))
	clear(keyPEM)
	if err != nil {
		return false, fmt.Errorf("CA of fusion set %q: %w", set, err)
	}
	return tx.InsertCA(ctx, store.CARow{
		FusionSet:   set,
		CertPEM:     string(ca.CertPEM()),
		KeySealed:   sealed,
		Fingerprint: ca.Fingerprint(),
		NotAfter:    ca.Cert.NotAfter,
		Created:     a.now(),
		Source:      source,
	})
}

func audit(ctx context.Context, tx *store.Tx, action, set, actor string, cert *x509.Certificate, now time.Time) error {
	_, err := tx.AppendAudit(ctx, store.AuditEntry{
		Time:    now,
		Actor:   actor,
		Action:  action,
		Subject: "fusion-set/" + set,
		Detail: map[string]any{
			"fingerprint": pki.Fingerprint(cert.Raw),
			"subject":     cert.Subject.String(),
			"notAfter":    cert.NotAfter.UTC().Format(time.RFC3339),
		},
	})
	return err
}
