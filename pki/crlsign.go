package pki

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// SignCRL signs a CRL with the given number and entries, valid from now
// for validity, and returns its DER. It writes nothing: `mcc revoke` writes
// the result to the CA directory, mcc server keeps it in its database.
func (ca *CA) SignCRL(number *big.Int, entries []x509.RevocationListEntry, validity time.Duration) ([]byte, error) {
	if validity <= 0 {
		validity = DefaultCRLValidity
	}
	now := ca.now().UTC()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                now.Add(validity),
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing CRL: %w", err)
	}
	return der, nil
}

// ReasonName is the RFC 5280 name of a CRL reason code ("keyCompromise"),
// the form records, the audit log and mcc server report.
func ReasonName(code int) string { return reasonNames[code] }
