package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

// clientLeaf is what differs between an app build's certificate and an
// install's: everything else about an mcc client certificate is fixed here.
type clientLeaf struct {
	what                string // "client certificate", "install certificate": for errors
	pub                 crypto.PublicKey
	subject             pkix.Name
	identity            *url.URL // from identityURI
	setID, appID        string
	notBefore, notAfter time.Time
}

// signClientLeaf signs an mcc client certificate: a random positive 128-bit
// serial, EKU clientAuth, KeyUsage digitalSignature, not a CA, exactly one
// URI SAN (the identity). It parses the result and proves the identity reads
// back exactly as the gateway will read it (certid.Identity).
func (ca *CA) signClientLeaf(l clientLeaf) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               l.subject,
		NotBefore:             l.notBefore,
		NotAfter:              l.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{l.identity},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, l.pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", l.what, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new %s: %w", l.what, err)
	}
	if set, app, n := certid.Identity(cert); n != 1 || set != l.setID || app != l.appID {
		return nil, fmt.Errorf("identity URI %q does not read back as fusion set %q, app %q", l.identity, l.setID, l.appID)
	}
	return cert, nil
}
