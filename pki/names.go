package pki

import (
	"crypto/x509/pkix"
	"fmt"
	"strings"
)

var attrNames = map[string]string{
	"2.5.4.3":  "CN",
	"2.5.4.5":  "serialNumber",
	"2.5.4.6":  "C",
	"2.5.4.7":  "L",
	"2.5.4.8":  "ST",
	"2.5.4.10": "O",
	"2.5.4.11": "OU",
	"2.5.4.13": "description",
}

// nameString renders a distinguished name in certificate order with
// readable attribute names ("O=bank-prod, CN=com.example.bank,
// serialNumber=build-42, description=mcc-build/v1?..."), like OpenSSL does,
// where pkix.Name.String would hex-encode the description.
func nameString(n pkix.Name) string {
	parts := make([]string, 0, len(n.Names))
	for _, atv := range n.Names {
		k, ok := attrNames[atv.Type.String()]
		if !ok {
			k = atv.Type.String()
		}
		parts = append(parts, k+"="+fmt.Sprint(atv.Value))
	}
	if len(parts) == 0 {
		return n.String()
	}
	return strings.Join(parts, ", ")
}
