package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// KeyType names a CA key algorithm on the command line.
type KeyType string

// Supported CA key types. Client certificates are always ECDSA P-256.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// KeyTypes lists the accepted key types, default first.
var KeyTypes = []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA3072, KeyRSA4096}

// ParseKeyType validates s; "" means the default, ECDSA P-256.
func ParseKeyType(s string) (KeyType, error) {
	if s == "" {
		return KeyECDSAP256, nil
	}
	for _, k := range KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown key type %q (want one of ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096)", s)
}

func generateKey(k KeyType) (crypto.Signer, error) {
	switch k {
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case KeyRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", k)
}

func marshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemEncode("PRIVATE KEY", der), nil
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
}

// randomSerial returns a positive random 128-bit certificate serial number
// (RFC 5280 allows up to 20 octets; 128 bits of entropy makes serials
// unpredictable and, in practice, unique).
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
		if err != nil {
			return nil, fmt.Errorf("generating serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// signDigest signs the SHA-256 of msg with key: ECDSA (ASN.1) or RSA-PSS.
// It returns the algorithm name recorded next to the signature.
func signDigest(key crypto.Signer, msg []byte) (alg string, sig []byte, err error) {
	sum := sha256.Sum256(msg)
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		sig, err = key.Sign(rand.Reader, sum[:], crypto.SHA256)
		return SigECDSASHA256, sig, err
	case *rsa.PublicKey:
		sig, err = key.Sign(rand.Reader, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
		return SigRSAPSSSHA256, sig, err
	}
	return "", nil, fmt.Errorf("unsupported CA key type %T", key.Public())
}

// Signature algorithm names used in records.
const (
	SigECDSASHA256  = "ECDSA-SHA256"
	SigRSAPSSSHA256 = "RSA-PSS-SHA256"
)

// verifyDigest checks a signDigest signature. The algorithm follows from the
// CA's key type, never from the record, so a record cannot pick a weaker one.
func verifyDigest(pub crypto.PublicKey, alg string, msg, sig []byte) error {
	sum := sha256.Sum256(msg)
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if alg != SigECDSASHA256 {
			return fmt.Errorf("signature algorithm %q does not match the CA's ECDSA key", alg)
		}
		if !ecdsa.VerifyASN1(pub, sum[:], sig) {
			return errors.New("signature does not verify with the CA key")
		}
		return nil
	case *rsa.PublicKey:
		if alg != SigRSAPSSSHA256 {
			return fmt.Errorf("signature algorithm %q does not match the CA's RSA key", alg)
		}
		if err := rsa.VerifyPSS(pub, crypto.SHA256, sum[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
			return errors.New("signature does not verify with the CA key")
		}
		return nil
	}
	return fmt.Errorf("unsupported CA key type %T", pub)
}
