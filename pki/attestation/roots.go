package attestation

import (
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
	"io/fs"
	"sort"
)

// googleRoots are the trust anchors Google publishes for Android Key
// Attestation (roots/README.md says where each came from).
//
//go:embed roots/*.pem
var googleRoots embed.FS

// GoogleRoots returns Google's published hardware attestation roots: the RSA
// root that has signed factory and remotely provisioned chains since 2016
// (its 2022 certificate; earlier certificates carry the same key) and the
// ECDSA P-384 "Key Attestation CA1" that signs remotely provisioned chains
// from February 2026. Each call parses a fresh copy.
func GoogleRoots() []*x509.Certificate {
	names, err := fs.Glob(googleRoots, "roots/*.pem")
	if err != nil {
		panic(err) // the pattern is a constant
	}
	sort.Strings(names)
	var roots []*x509.Certificate
	for _, name := range names {
		data, err := googleRoots.ReadFile(name)
		if err != nil {
			panic(err) // embedded at build time
		}
		certs, err := ParseRootsPEM(data)
		if err != nil {
			panic(fmt.Sprintf("embedded %s: %v", name, err)) // a test guards the files
		}
		roots = append(roots, certs...)
	}
	return roots
}

// ParseRootsPEM reads trust anchors from PEM (an operator's own roots file,
// or a replacement for the embedded ones when Google rotates again).
func ParseRootsPEM(data []byte) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("attestation root %d: %w", len(roots), err)
		}
		roots = append(roots, c)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("no CERTIFICATE block in attestation roots")
	}
	return roots, nil
}
