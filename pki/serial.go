package pki

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// FormatSerial writes a serial number the way revoked.txt, records and the
// audit log carry it: lower-case hex without leading zeros or colons.
func FormatSerial(n *big.Int) string { return n.Text(16) }

// ParseSerial reads a hex serial number in any case, with or without colons
// or spaces between bytes (as `openssl x509 -serial` or browsers print them)
// and an optional 0x prefix.
func ParseSerial(s string) (*big.Int, error) {
	orig := s
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	s = strings.NewReplacer(":", "", " ", "").Replace(s)
	if s == "" {
		return nil, errors.New("empty serial number")
	}
	if strings.TrimLeft(s, "0123456789abcdefABCDEF") != "" {
		return nil, fmt.Errorf("serial number %q is not hexadecimal", orig)
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		return nil, fmt.Errorf("serial number %q is not hexadecimal", orig)
	}
	if n.Sign() <= 0 {
		return nil, fmt.Errorf("serial number %q must be positive", orig)
	}
	if n.BitLen() > 160 {
		return nil, fmt.Errorf("serial number %q is longer than 20 bytes", orig)
	}
	return n, nil
}
