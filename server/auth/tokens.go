package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mccgate/mcc/server/store"
)

// ErrUnauthorized is every reason a bearer token is refused: malformed,
// unknown, wrong secret, expired or revoked all look the same to a caller.
var ErrUnauthorized = errors.New("unauthorized")

// ErrNameTaken is wrapped when a token name is already used (also by a
// revoked token: names stay unique so the audit log stays readable).
var ErrNameTaken = errors.New("token name already used")

// InvalidError is a token request that breaks a rule; Field names the
// input (name, scopes, expiresIn).
type InvalidError struct {
	Field  string
	Detail string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Detail }

// Token is an API token without its secret.
type Token struct {
	ID        string
	Name      string
	Scopes    []Scope
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	// LastUsedAt is written at most once a minute (see Verify).
	LastUsedAt time.Time
	RevokedAt  time.Time // zero: not revoked
	CreatedBy  string
}

// The token format: mcc_<16 hex id>_<43 base64url secret>.
const (
	tokenPrefix = "mcc_"
	idBytes     = 8
	secretBytes = 32
	idLen       = 2 * idBytes
	secretLen   = 43 // base64url of 32 bytes, unpadded
	// TokenLen is the length of a bearer token.
	TokenLen = len(tokenPrefix) + idLen + 1 + secretLen
)

// lastUsedEvery bounds how often a token's last use is written: a write
// per request would put every request on the single SQLite writer.
const lastUsedEvery = time.Minute

// namePattern is the rule for token names: short, lower-case, safe in
// logs, file names and URLs.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// dummyHash is compared against when the id is unknown, so a wrong id takes
// as long as a wrong secret.
var dummyHash = sha256.Sum256([]byte("mcc-no-such-token"))

// Tokens is the token store.
type Tokens struct {
	db  *store.DB
	now func() time.Time

	// touched remembers when this instance last wrote each token's last
	// use, so concurrent requests do not all write it.
	mu      sync.Mutex
	touched map[string]time.Time
}

// NewTokens returns the token store of db.
func NewTokens(db *store.DB, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{db: db, now: now, touched: map[string]time.Time{}}
}

// CheckName reports whether name is a valid token name.
func CheckName(name string) error {
	if !namePattern.MatchString(name) {
		return &InvalidError{Field: "name", Detail: "must be 1 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"}
	}
	// Revoke takes an id or a name: a name that looks like an id would
	// make "revoke 0123456789abcdef" ambiguous.
	if len(name) == idLen && isLowerHex(name) {
		return &InvalidError{Field: "name", Detail: "must not look like a token id (16 hex digits)"}
	}
	return nil
}

// Create makes a token and returns its secret, which is shown once and
// stored only as a hash. expiresIn 0 means it never expires. The creation
// is audited (actor is the creating token's or CLI user's name).
// maxExpiresIn bounds a token's lifetime so its expiry stays a time the
// database's nanoseconds can hold (longer ones wrapped into the past).
const maxExpiresIn = 100 * 365 * 24 * time.Hour

func (t *Tokens) Create(ctx context.Context, name string, scopes []Scope, expiresIn time.Duration, actor string) (string, Token, error) {
	if err := CheckName(name); err != nil {
		return "", Token{}, err
	}
	scopes, err := normalizeScopes(scopes)
	if err != nil {
		return "", Token{}, err
	}
	if expiresIn < 0 {
		return "", Token{}, &InvalidError{Field: "expiresIn", Detail: "must not be negative"}
	}
	if expiresIn > 0 && expiresIn < time.Minute {
		return "", Token{}, &InvalidError{Field: "expiresIn", Detail: "must be at least 1m"}
	}
	if expiresIn > maxExpiresIn {
		return "", Token{}, &InvalidError{Field: "expiresIn", Detail: "must be at most 100 years (omit it for no expiry)"}
	}
	var raw [idBytes + secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, fmt.Errorf("tokens: %w", err)
	}
	id := hex.EncodeToString(raw[:idBytes])
	secret := base64.RawURLEncoding.EncodeToString(raw[idBytes:])
	hash := sha256.Sum256([]byte(secret))
	now := t.now().UTC()
	row := store.TokenRow{ID: id, Name: name, Hash: hash[:], Scopes: joinScopes(scopes), Created: now, CreatedBy: actor}
	if expiresIn > 0 {
		row.Expires = now.Add(expiresIn)
	}
	err = t.db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.InsertToken(ctx, row); err != nil {
			if store.IsUniqueViolation(err) {
				return fmt.Errorf("token %q: %w", name, ErrNameTaken)
			}
			return err
		}
		detail := map[string]any{"id": id, "scopes": row.Scopes}
		if !row.Expires.IsZero() {
			detail["expiresAt"] = row.Expires.Format(time.RFC3339)
		}
		_, err := tx.AppendAudit(ctx, store.AuditEntry{Time: now, Actor: actor, Action: store.AuditTokenCreate,
			Subject: "token/" + name, Detail: detail})
		return err
	})
	if err != nil {
		return "", Token{}, err
	}
	tok, err := fromRow(row)
	if err != nil {
		return "", Token{}, err
	}
	return tokenPrefix + id + "_" + secret, tok, nil
}

// Verify checks a bearer token and returns its caller. Every refusal is
// ErrUnauthorized; any other error is the database failing. The check
// takes the same steps whatever part is wrong: the row is looked up by id
// and the secret's hash compared in constant time, against a dummy hash
// when the id is unknown.
func (t *Tokens) Verify(ctx context.Context, bearer string) (*Caller, error) {
	id, secret, wellFormed := splitToken(bearer)
	row, err := t.db.TokenByID(ctx, id)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	want := dummyHash[:]
	if found && len(row.Hash) == sha256.Size {
		want = row.Hash
	}
	got := sha256.Sum256([]byte(secret))
	match := subtle.ConstantTimeCompare(got[:], want) == 1
	now := t.now()
	if !wellFormed || !found || !match || !row.Revoked.IsZero() || (!row.Expires.IsZero() && !now.Before(row.Expires)) {
		return nil, ErrUnauthorized
	}
	scopes, err := ParseScopes(row.Scopes)
	if err != nil {
		// A row this server did not write (or a newer one's scope).
		return nil, ErrUnauthorized
	}
	t.touch(ctx, row, now)
	return &Caller{TokenID: row.ID, TokenName: row.Name, Scopes: scopes}, nil
}

// touch records the token's use at most once every lastUsedEvery.
func (t *Tokens) touch(ctx context.Context, row store.TokenRow, now time.Time) {
	if now.Sub(row.LastUsed) < lastUsedEvery {
		return
	}
	t.mu.Lock()
	if now.Sub(t.touched[row.ID]) < lastUsedEvery {
		t.mu.Unlock()
		return
	}
	t.touched[row.ID] = now
	// The map holds one time per token that was used: bounded by the
	// tokens table, and old times are useless, so drop them on the way.
	if len(t.touched) > 1024 {
		for id, at := range t.touched {
			if now.Sub(at) >= lastUsedEvery {
				delete(t.touched, id)
			}
		}
	}
	t.mu.Unlock()
	// Best effort: last use is information for the operator; a request is
	// not refused because the database was briefly busy writing it.
	_ = t.db.TouchToken(ctx, row.ID, now, now.Add(-lastUsedEvery))
}

// splitToken parses mcc_<id>_<secret>. A malformed token yields a
// placeholder id that matches no row, so Verify takes its usual steps.
func splitToken(bearer string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(bearer, tokenPrefix)
	if !ok || len(bearer) != TokenLen || rest[idLen] != '_' {
		return "-", bearer, false
	}
	id, secret = rest[:idLen], rest[idLen+1:]
	if !isLowerHex(id) {
		return "-", bearer, false
	}
	return id, secret, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// List returns every token (revoked ones too), oldest first.
func (t *Tokens) List(ctx context.Context) ([]Token, error) {
	rows, err := t.db.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Token, 0, len(rows))
	for _, r := range rows {
		tok, err := fromRow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, tok)
	}
	return out, nil
}

// Revoke revokes the token with this id or name; it is refused from the
// next request on. Revoking a revoked token changes nothing and is not
// audited again. An unknown token wraps store.ErrNotFound.
func (t *Tokens) Revoke(ctx context.Context, idOrName, actor string) (Token, error) {
	// A key no token can have is not looked up (PostgreSQL refuses some
	// bytes in text, e.g. NUL, which would be a server error).
	if CheckName(idOrName) != nil && (len(idOrName) != idLen || !isLowerHex(idOrName)) {
		return Token{}, fmt.Errorf("token %q: %w", idOrName, store.ErrNotFound)
	}
	var row store.TokenRow
	err := t.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if row, err = tx.TokenByIDOrName(ctx, idOrName); err != nil {
			return err
		}
		if !row.Revoked.IsZero() {
			return nil
		}
		row.Revoked = t.now().UTC()
		if err := tx.RevokeToken(ctx, row.ID, row.Revoked); err != nil {
			return err
		}
		_, err = tx.AppendAudit(ctx, store.AuditEntry{Time: row.Revoked, Actor: actor, Action: store.AuditTokenRevoke,
			Subject: "token/" + row.Name, Detail: map[string]any{"id": row.ID}})
		return err
	})
	if err != nil {
		return Token{}, err
	}
	return fromRow(row)
}

func fromRow(r store.TokenRow) (Token, error) {
	scopes, err := ParseScopes(r.Scopes)
	if err != nil {
		return Token{}, fmt.Errorf("token %q: stored scopes: %w", r.Name, err)
	}
	return Token{ID: r.ID, Name: r.Name, Scopes: scopes, CreatedAt: r.Created, ExpiresAt: r.Expires,
		LastUsedAt: r.LastUsed, RevokedAt: r.Revoked, CreatedBy: r.CreatedBy}, nil
}

// normalizeScopes checks, sorts and deduplicates scopes. Each element
// must be one scope: "read,admin" in one element is refused, not split.
func normalizeScopes(scopes []Scope) ([]Scope, error) {
	for _, s := range scopes {
		if strings.Contains(string(s), ",") {
			return nil, &InvalidError{Field: "scopes", Detail: fmt.Sprintf("unknown scope %q (want %s)", s, scopeList())}
		}
	}
	out, err := ParseScopes(joinScopes(scopes))
	if err != nil {
		return nil, &InvalidError{Field: "scopes", Detail: err.Error()}
	}
	return out, nil
}

func joinScopes(scopes []Scope) string {
	parts := make([]string, len(scopes))
	for i, s := range scopes {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}
