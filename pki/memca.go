package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"
)

// NewCA creates a self-signed CA in memory: nothing is written (Dir is
// empty). InitCA uses it for the CA it then writes to a directory; mcc
// server uses it directly and keeps the key sealed in its database.
func NewCA(opts CAOptions) (*CA, error) {
	opts, err := opts.normalized()
	if err != nil {
		return nil, err
	}
	ca := &CA{Now: opts.Now}
	key, err := generateKey(opts.KeyType)
	if err != nil {
		return nil, fmt.Errorf("generating %s CA key: %w", opts.KeyType, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: opts.Name},
		NotBefore:             now.Add(-5 * time.Minute), // tolerate small clock skew
		NotAfter:              now.Add(opts.ValidFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // issues leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new CA certificate: %w", err)
	}
	ca.Cert, ca.Key = cert, key
	return ca, nil
}

// normalized fills the defaults in and checks the options.
func (opts CAOptions) normalized() (CAOptions, error) {
	if opts.Name == "" {
		opts.Name = DefaultCAName
	}
	kt, err := ParseKeyType(string(opts.KeyType))
	if err != nil {
		return opts, err
	}
	opts.KeyType = kt
	if opts.ValidFor == 0 {
		opts.ValidFor = DefaultCAValidity
	}
	if opts.ValidFor < time.Hour {
		return opts, fmt.Errorf("CA validity %s is too short (minimum 1h)", opts.ValidFor)
	}
	return opts, nil
}

// CertPEM is the CA certificate as PEM.
func (ca *CA) CertPEM() []byte { return pemEncode("CERTIFICATE", ca.Cert.Raw) }

// KeyPEM is the CA's private key as PKCS#8 PEM. It is a secret: seal it or
// write it 0600, never log it.
func (ca *CA) KeyPEM() ([]byte, error) { return marshalKeyPEM(ca.Key) }

// ParseCA builds a CA (Dir empty) from its certificate and key PEM, with
// the checks LoadCA makes.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if err := checkCAPair(cert, key); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// checkCAPair is the rule for a usable CA: a CA certificate and the key
// of its public key.
func checkCAPair(cert *x509.Certificate, key crypto.Signer) error {
	if !cert.IsCA {
		return fmt.Errorf("%s is not a CA certificate", CACertFile)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("%s does not match %s", CAKeyFile, CACertFile)
	}
	return nil
}
