package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// The bundle envelope keeps a legacy (3DES) PKCS#12 file encrypted with
// AES-256 at rest in an app package: iOS and Android 13 and older import
// only 3DES bundles, so the app opens the envelope in memory and hands the
// PKCS#12 inside to the platform importer, with the same password.
//
// Layout (every client in examples/clients reads it):
//
//	magic  8 bytes  "MCCENV01"
//	salt  16 bytes  random
//	nonce 12 bytes  random
//	data  rest      AES-256-GCM ciphertext of the PKCS#12 file, then the
//	                16-byte tag; the additional data is the magic
//
// The key is PBKDF2-HMAC-SHA256(password as UTF-8, salt, 10,000, 32 bytes).
// The password is 256 random bits, so the iterations are not what protects
// it; they are few enough for a phone at start-up.
const (
	envelopeMagic      = "MCCENV01"
	envelopeSaltLen    = 16
	envelopeNonceLen   = 12
	envelopeIterations = 10000
	envelopeHeaderLen  = len(envelopeMagic) + envelopeSaltLen + envelopeNonceLen
)

// ErrEnvelopeOpen is the one error of a wrong password or damaged
// envelope: GCM cannot tell them apart, and neither should an attacker.
var ErrEnvelopeOpen = errors.New("bundle envelope does not open: wrong password or damaged file")

// IsEnvelope reports whether data starts like a bundle envelope.
func IsEnvelope(data []byte) bool { return bytes.HasPrefix(data, []byte(envelopeMagic)) }

// SealEnvelope encrypts a PKCS#12 file into an envelope under password.
func SealEnvelope(p12 []byte, password string) ([]byte, error) {
	out := make([]byte, envelopeHeaderLen, envelopeHeaderLen+len(p12)+16)
	copy(out, envelopeMagic)
	if _, err := rand.Read(out[len(envelopeMagic):envelopeHeaderLen]); err != nil {
		return nil, fmt.Errorf("bundle envelope: %w", err)
	}
	aead, err := envelopeAEAD(password, out[len(envelopeMagic):len(envelopeMagic)+envelopeSaltLen])
	if err != nil {
		return nil, err
	}
	nonce := out[len(envelopeMagic)+envelopeSaltLen : envelopeHeaderLen]
	return aead.Seal(out, nonce, p12, []byte(envelopeMagic)), nil
}

// OpenEnvelope returns the PKCS#12 file inside an envelope.
func OpenEnvelope(data []byte, password string) ([]byte, error) {
	if !IsEnvelope(data) {
		return nil, errors.New("not a bundle envelope (no " + envelopeMagic + " header)")
	}
	if len(data) < envelopeHeaderLen+16 {
		return nil, ErrEnvelopeOpen
	}
	aead, err := envelopeAEAD(password, data[len(envelopeMagic):len(envelopeMagic)+envelopeSaltLen])
	if err != nil {
		return nil, err
	}
	p12, err := aead.Open(nil, data[len(envelopeMagic)+envelopeSaltLen:envelopeHeaderLen], data[envelopeHeaderLen:], []byte(envelopeMagic))
	if err != nil {
		return nil, ErrEnvelopeOpen
	}
	return p12, nil
}

func envelopeAEAD(password string, salt []byte) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, password, salt, envelopeIterations, 32)
	if err != nil {
		return nil, fmt.Errorf("bundle envelope: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("bundle envelope: %w", err)
	}
	return cipher.NewGCM(block)
}
