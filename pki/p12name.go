package pki

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"unicode/utf16"
)

// go-pkcs12 (v0.7.4) writes no friendlyName attribute on the key or the
// leaf certificate, and has no option for one. Importers use it as the
// entry's label: the Java and Android KeyStore alias, the name iOS and
// Android show for the installed identity, `openssl pkcs12 -info`. So
// addKeyFriendlyName adds it to the key bag after encoding: the key bag
// sits in the unencrypted SafeContents (the key inside it is shrouded on
// its own), so only the outer MAC has to be recomputed, with the encoder's
// own MAC algorithm, salt and iteration count. The certificate bags are
// inside the encrypted SafeContents and keep no friendlyName (re-encrypting
// them would mean re-implementing go-pkcs12's ciphers).

var (
	oidP12Data            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidP12ShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidP12FriendlyName    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidP12MacSHA1         = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidP12MacSHA256       = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	errP12FriendlyNameFmt = errors.New("pkcs12 friendlyName: unexpected structure")
)

// The ASN.1 shapes of RFC 7292, as go-pkcs12 writes them.
type p12PFX struct {
	Version  int
	AuthSafe p12ContentInfo
	MacData  p12MacData `asn1:"optional"`
}

type p12ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type p12MacData struct {
	Mac        p12DigestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type p12DigestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

type p12SafeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue  `asn1:"tag:0,explicit"`
	Attributes []p12Attribute `asn1:"set,optional"`
}

type p12Attribute struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

// addKeyFriendlyName returns pfxData with a friendlyName attribute on its
// shrouded key bag and the MAC recomputed with password.
func addKeyFriendlyName(pfxData []byte, password, name string) ([]byte, error) {
	nameBMP, err := bmp(name)
	if err != nil {
		return nil, fmt.Errorf("pkcs12 friendlyName %q: %w", name, err)
	}
	var pfx p12PFX
	if rest, err := asn1.Unmarshal(pfxData, &pfx); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("pkcs12 friendlyName: parsing PFX: %v", err)
	}
	if !pfx.AuthSafe.ContentType.Equal(oidP12Data) {
		return nil, errP12FriendlyNameFmt
	}
	var authSafe []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		return nil, fmt.Errorf("pkcs12 friendlyName: %w", err)
	}
	var infos []p12ContentInfo
	if _, err := asn1.Unmarshal(authSafe, &infos); err != nil {
		return nil, fmt.Errorf("pkcs12 friendlyName: %w", err)
	}
	attrValue, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: nameBMP})
	if err != nil {
		return nil, err
	}
	found := 0
	for i, ci := range infos {
		if !ci.ContentType.Equal(oidP12Data) {
			continue // the encrypted certificate SafeContents
		}
		var contents []byte
		if _, err := asn1.Unmarshal(ci.Content.Bytes, &contents); err != nil {
			return nil, fmt.Errorf("pkcs12 friendlyName: %w", err)
		}
		var bags []p12SafeBag
		if _, err := asn1.Unmarshal(contents, &bags); err != nil {
			return nil, fmt.Errorf("pkcs12 friendlyName: %w", err)
		}
		for j := range bags {
			if !bags[j].ID.Equal(oidP12ShroudedKeyBag) {
				continue
			}
			bags[j].Attributes = append(bags[j].Attributes, p12Attribute{
				ID:    oidP12FriendlyName,
				Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: attrValue},
			})
			found++
		}
		if contents, err = asn1.Marshal(bags); err != nil {
			return nil, err
		}
		octets, err := asn1.Marshal(contents)
		if err != nil {
			return nil, err
		}
		infos[i].Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: octets}
	}
	if found != 1 {
		return nil, fmt.Errorf("pkcs12 friendlyName: %d key bags, want 1", found)
	}
	if authSafe, err = asn1.Marshal(infos); err != nil {
		return nil, err
	}
	octets, err := asn1.Marshal(authSafe)
	if err != nil {
		return nil, err
	}
	pfx.AuthSafe.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: octets}

	var newHash func() hash.Hash
	switch alg := pfx.MacData.Mac.Algorithm.Algorithm; {
	case alg.Equal(oidP12MacSHA1):
		newHash = sha1.New
	case alg.Equal(oidP12MacSHA256):
		newHash = sha256.New
	default:
		return nil, fmt.Errorf("pkcs12 friendlyName: MAC algorithm %v not supported", alg)
	}
	pwBMP, err := bmp(password)
	if err != nil {
		return nil, fmt.Errorf("pkcs12 friendlyName: password: %w", err)
	}
	pwBMP = append(pwBMP, 0, 0) // RFC 7292 B.1: zero-terminated
	key := pkcs12MacKey(newHash, pfx.MacData.MacSalt, pwBMP, pfx.MacData.Iterations)
	mac := hmac.New(newHash, key)
	mac.Write(authSafe)
	pfx.MacData.Mac.Digest = mac.Sum(nil)
	return asn1.Marshal(pfx)
}

// pkcs12MacKey derives the MAC key of RFC 7292 appendix B.2 (ID 3). The
// key is one hash output long, so only the first block A_1 is needed.
func pkcs12MacKey(newHash func() hash.Hash, salt, password []byte, iterations int) []byte {
	h := newHash()
	v := h.BlockSize() // 64 for SHA-1 and SHA-256
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := make([]byte, v)
	for i := range d {
		d[i] = 3 // ID 3: MAC key
	}
	h.Write(d)
	h.Write(fill(salt))
	h.Write(fill(password))
	a := h.Sum(nil)
	for i := 1; i < iterations; i++ {
		h.Reset()
		h.Write(a)
		a = h.Sum(a[:0])
	}
	return a
}

// bmp encodes s as a BMPString (UCS-2, big-endian).
func bmp(s string) ([]byte, error) {
	out := make([]byte, 0, 2*len(s))
	for _, r := range s {
		if r > 0xFFFF || utf16.IsSurrogate(r) {
			return nil, errors.New("character outside the Basic Multilingual Plane")
		}
		out = append(out, byte(r>>8), byte(r))
	}
	return out, nil
}
