// Package keys is mcc server's key-encryption key (KEK): 32 random bytes in
// a file that never enters the database, so a copy of the database (a
// backup, a PostgreSQL dump) holds no usable CA key. Secrets are sealed with
// AES-256-GCM under a random nonce; the additional data names what a
// sealed value is for, so a value sealed for one use (the CA key of set A)
// cannot be passed off as another (the CA key of set B, a stored response).
package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// KEKSize is the length of the key in the KEK file.
const KEKSize = 32

// sealVersion is the first byte of every sealed value, so a later format
// (another cipher, KEK rotation) can be told apart.
const sealVersion = 1

// kekIDSize is the length of the KEK id stored in every sealed value: it
// lets Open say "sealed with another KEK" instead of a bare failure when an
// instance runs with the wrong --kek-file.
const kekIDSize = 4

// header is version, KEK id and nonce.
const headerSize = 1 + kekIDSize + 12

// ErrWrongKEK is wrapped when a value was sealed under another KEK.
var ErrWrongKEK = errors.New("sealed with another key-encryption key")

// Sealer seals and opens secrets with the KEK.
type Sealer struct {
	aead cipher.AEAD
	id   [kekIDSize]byte
	// macKey is derived from the KEK for MACs (never the KEK itself, so a
	// MAC and a sealed value can never be confused).
	macKey [32]byte
}

// LoadOrCreate loads the KEK at path, creating it (0600, its directory
// 0700) with fresh random bytes when the file does not exist.
func LoadOrCreate(path string) (*Sealer, error) {
	s, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	if err := create(path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	// Created now, or by a process that won the race: either way load it.
	return Load(path)
}

// create writes a new KEK file atomically: a temporary file linked into
// place, so no process ever reads a half-written key and an existing key
// is never replaced.
func create(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("kek: creating directory: %w", err)
	}
	key := make([]byte, KEKSize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("kek: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kek-*")
	if err != nil {
		return fmt.Errorf("kek: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("kek: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return fmt.Errorf("kek: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("kek: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("kek: writing %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("kek: creating %s: %w", path, err)
	}
	return nil
}

// Load loads the KEK at path, which must exist (PostgreSQL: every instance
// shares one --kek-file). A file that others may read is refused: the KEK
// opens every CA key.
func Load(path string) (*Sealer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("kek: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("kek: %s is readable by group or others (mode %04o); run chmod 600 %s", path, perm, path)
	}
	key, err := io.ReadAll(io.LimitReader(f, KEKSize+1))
	if err != nil {
		return nil, fmt.Errorf("kek: reading %s: %w", path, err)
	}
	if len(key) != KEKSize {
		return nil, fmt.Errorf("kek: %s must hold exactly %d bytes", path, KEKSize)
	}
	return New(key)
}

// New returns a Sealer for a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("kek: the key must be %d bytes", KEKSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	s := &Sealer{aead: aead}
	// The id is a MAC of a constant: it names the key without revealing it.
	m := hmac.New(sha256.New, key)
	m.Write([]byte("mcc-kek-id/v1"))
	copy(s.id[:], m.Sum(nil))
	m = hmac.New(sha256.New, key)
	m.Write([]byte("mcc-kek-mac/v1"))
	copy(s.macKey[:], m.Sum(nil))
	return s, nil
}

// MAC returns HMAC-SHA256 of data under a key derived from the KEK for
// label (which names the use: a MAC for one use never verifies for
// another). Every instance sharing the KEK computes the same MAC, so a
// value one instance hands out verifies at another.
func (s *Sealer) MAC(label string, data []byte) []byte {
	m := hmac.New(sha256.New, s.macKey[:])
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// ID names the KEK (8 hex characters), for logs and error messages.
func (s *Sealer) ID() string { return hex.EncodeToString(s.id[:]) }

// Seal encrypts plaintext bound to aad (which says what the value is for;
// it must not be empty).
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	if len(aad) == 0 {
		return nil, errors.New("kek: seal needs additional data naming the use")
	}
	out := make([]byte, headerSize, headerSize+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:], s.id[:])
	nonce := out[1+kekIDSize : headerSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("kek: %w", err)
	}
	return s.aead.Seal(out, nonce, plaintext, s.additional(aad)), nil
}

// Open decrypts a value Seal made with the same aad. A changed value, a
// different aad or another KEK is an error that says nothing of the
// content.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < headerSize+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("kek: not a sealed value")
	}
	if !bytes.Equal(sealed[1:1+kekIDSize], s.id[:]) {
		return nil, fmt.Errorf("kek: %w (key id %s, this server's is %s): every instance needs the same --kek-file",
			ErrWrongKEK, hex.EncodeToString(sealed[1:1+kekIDSize]), s.ID())
	}
	nonce := sealed[1+kekIDSize : headerSize]
	plain, err := s.aead.Open(nil, nonce, sealed[headerSize:], s.additional(aad))
	if err != nil {
		return nil, errors.New("kek: the sealed value does not open (changed, or sealed for another use)")
	}
	return plain, nil
}

// additional binds the format version to the caller's aad.
func (s *Sealer) additional(aad []byte) []byte {
	return append([]byte{sealVersion}, aad...)
}
