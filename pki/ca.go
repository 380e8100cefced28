package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Names of the files in a CA directory.
const (
	CACertFile  = "ca.pem"
	CAKeyFile   = "ca-key.pem" // private
	RevokedFile = "revoked.txt"
	CRLFile     = "crl.pem"
	AuditFile   = "audit.log"
	lockFile    = ".lock"
)

// DefaultCAValidity is how long a new CA is valid unless told otherwise.
const DefaultCAValidity = 10 * 365 * 24 * time.Hour

// DefaultCAName is the CA's common name unless told otherwise.
const DefaultCAName = "mcc client CA"

// CAOptions configures InitCA.
type CAOptions struct {
	Name     string        // Subject CN; DefaultCAName when empty
	KeyType  KeyType       // KeyECDSAP256 when empty
	ValidFor time.Duration // DefaultCAValidity when zero
	Now      func() time.Time
}

// CA is a certificate authority loaded from its directory.
type CA struct {
	Dir  string
	Cert *x509.Certificate
	Key  crypto.Signer // private: never log or serialize it
	// Now is the clock used for issuance, revocation and audit times
	// (time.Now when nil); tests move it.
	Now func() time.Time
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// Fingerprint is the lower-case hex SHA-256 of the CA certificate.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert.Raw) }

// Path returns the path of a file in the CA directory.
func (ca *CA) Path(name string) string { return filepath.Join(ca.Dir, name) }

// InitCA creates a self-signed CA in dir (created 0700 when missing). It
// refuses to touch a directory that already holds a CA certificate or key.
// Besides the certificate and key it writes an empty revocation list, an
// initial CRL (so a fusion set can reference both from day one) and the
// first audit log entry.
func InitCA(dir string, opts CAOptions) (*CA, error) {
	if dir == "" {
		return nil, errors.New("CA directory is empty")
	}
	// Check the options before touching the disk.
	opts, err := opts.normalized()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, modeDir); err != nil {
		return nil, fmt.Errorf("creating CA directory: %w", err)
	}
	for _, name := range []string{CACertFile, CAKeyFile} {
		exists, err := fileExists(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if exists {
			return nil, fmt.Errorf("a CA already exists in %s (%s); refusing to overwrite it", dir, name)
		}
	}
	// A leftover audit log would not belong to the new CA (its entry 1 names
	// another CA), and every later append would refuse it.
	if exists, err := fileExists(filepath.Join(dir, AuditFile)); err != nil {
		return nil, err
	} else if exists {
		return nil, fmt.Errorf("%s already holds an audit log (%s) without a CA; move it away first", dir, AuditFile)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	ca, err := NewCA(opts)
	if err != nil {
		return nil, err
	}
	ca.Dir = dir
	now := ca.now()
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}

	keyPath, certPath := ca.Path(CAKeyFile), ca.Path(CACertFile)
	if err := writeNewFile(keyPath, keyPEM, modePrivate); err != nil {
		return nil, fmt.Errorf("writing CA key: %w", err)
	}
	if err := writeNewFile(certPath, ca.CertPEM(), modePublic); err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("writing CA certificate: %w", err)
	}
	if err := ca.writeRevocations(nil, DefaultCRLValidity); err != nil {
		return nil, err
	}
	if _, err := ca.appendAudit(AuditEntry{
		Time:   now,
		Action: AuditInit,
		Serial: FormatSerial(ca.Cert.SerialNumber),
		SHA256: ca.Fingerprint(),
		Detail: opts.Name,
	}); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA reads the CA certificate and key from dir and checks that they
// belong together.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %s: %w", CACertFile, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading CA: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading CA: %s: %w", CAKeyFile, err)
	}
	if err := checkCAPair(cert, key); err != nil {
		return nil, fmt.Errorf("loading CA from %s: %w", dir, err)
	}
	return &CA{Dir: dir, Cert: cert, Key: key}, nil
}

// LoadCACert reads only the CA certificate of dir (for verifying records
// where the private key is not available).
func LoadCACert(dir string) (*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("loading CA certificate: %w", err)
	}
	cert, err := ParseCertificatePEM(data)
	if err != nil {
		return nil, fmt.Errorf("loading CA certificate: %s: %w", CACertFile, err)
	}
	return cert, nil
}

// ParseCertificatePEM parses the first CERTIFICATE block of data.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block found")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}
