package attestation

import (
	"encoding/asn1"
	"errors"
	"fmt"
)

// OIDAndroidKeyDescription is the Android Key Attestation extension.
var OIDAndroidKeyDescription = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 1, 17}

// MaxKeyDescriptionSize bounds the extension an attacker can make us parse.
const MaxKeyDescriptionSize = 64 << 10

// Tags of the AuthorizationList entries this package reads (KeyMint Tag.aidl
// numbers, without the type bits). Every other tag is skipped.
const (
	tagRootOfTrust              = 704
	tagAttestationApplicationID = 709
)

// AndroidKeyDescription is the part of the KeyDescription extension that the
// checks use, parsed per the published schema:
//
//	KeyDescription ::= SEQUENCE {
//	    attestationVersion         INTEGER,
//	    attestationSecurityLevel   SecurityLevel,
//	    keyMintVersion             INTEGER,
//	    keyMintSecurityLevel       SecurityLevel,
//	    attestationChallenge       OCTET_STRING,
//	    uniqueId                   OCTET_STRING,
//	    softwareEnforced           AuthorizationList,
//	    hardwareEnforced           AuthorizationList,
//	}
//	SecurityLevel ::= ENUMERATED { Software (0), TrustedEnvironment (1), StrongBox (2) }
//	AuthorizationList ::= SEQUENCE { ... rootOfTrust [704] EXPLICIT RootOfTrust OPTIONAL,
//	    ... attestationApplicationId [709] EXPLICIT OCTET_STRING OPTIONAL, ... }
//	RootOfTrust ::= SEQUENCE { verifiedBootKey OCTET_STRING, deviceLocked BOOLEAN,
//	    verifiedBootState VerifiedBootState, verifiedBootHash OCTET_STRING (version 3+) }
//	AttestationApplicationId ::= SEQUENCE {
//	    package_infos  SET OF AttestationPackageInfo,
//	    signature_digests  SET OF OCTET_STRING }
//	AttestationPackageInfo ::= SEQUENCE { package_name OCTET_STRING, version INTEGER }
type AndroidKeyDescription struct {
	AttestationVersion       int
	AttestationSecurityLevel SecurityLevel
	KeyMintVersion           int
	KeyMintSecurityLevel     SecurityLevel
	AttestationChallenge     []byte
	UniqueID                 []byte
	Software                 AuthorizationList
	Hardware                 AuthorizationList
}

// AuthorizationList holds the entries of one list that the checks use.
type AuthorizationList struct {
	// AppID is nil when the list has no attestationApplicationId.
	AppID *AttestationApplicationID
	// RootOfTrust is nil when the list has none.
	RootOfTrust *RootOfTrust
	// Tags are all entry tags in order, known or not (for diagnostics).
	Tags []int
}

// AttestationApplicationID names the app that asked for the key.
type AttestationApplicationID struct {
	Packages         []PackageInfo
	SignatureDigests [][]byte
}

// Wire forms for encoding/asn1. Lists are read entry by entry (RawValue), so
// unknown tags and ones added by later schema versions are skipped, not
// refused.
type keyDescriptionASN1 struct {
	AttestationVersion       int
	AttestationSecurityLevel asn1.Enumerated
	KeyMintVersion           int
	KeyMintSecurityLevel     asn1.Enumerated
	AttestationChallenge     []byte
	UniqueID                 []byte
	SoftwareEnforced         asn1.RawValue
	HardwareEnforced         asn1.RawValue
}

type rootOfTrustASN1 struct {
	VerifiedBootKey []byte
	// DeviceLocked is read by hand: some devices encode TRUE as 0x01, which
	// BER allows and encoding/asn1 (DER) refuses.
	DeviceLocked      asn1.RawValue
	VerifiedBootState asn1.Enumerated
	VerifiedBootHash  []byte `asn1:"optional"`
}

type appIDASN1 struct {
	PackageInfos     []packageInfoASN1 `asn1:"set"`
	SignatureDigests [][]byte          `asn1:"set"`
}

type packageInfoASN1 struct {
	PackageName []byte
	Version     int64
}

// ParseAndroidKeyDescription parses the DER value of the KeyDescription
// extension. It is strict about the fields the checks use and tolerant of
// AuthorizationList entries it does not know.
func ParseAndroidKeyDescription(der []byte) (*AndroidKeyDescription, error) {
	if len(der) > MaxKeyDescriptionSize {
		return nil, fmt.Errorf("key description is %d bytes, over the %d-byte limit", len(der), MaxKeyDescriptionSize)
	}
	var w keyDescriptionASN1
	rest, err := asn1.Unmarshal(der, &w)
	if err != nil {
		return nil, fmt.Errorf("key description: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("key description: trailing data")
	}
	kd := &AndroidKeyDescription{
		AttestationVersion:   w.AttestationVersion,
		KeyMintVersion:       w.KeyMintVersion,
		AttestationChallenge: w.AttestationChallenge,
		UniqueID:             w.UniqueID,
	}
	if kd.AttestationSecurityLevel, err = securityLevelOf(w.AttestationSecurityLevel); err != nil {
		return nil, fmt.Errorf("key description: attestationSecurityLevel: %w", err)
	}
	if kd.KeyMintSecurityLevel, err = securityLevelOf(w.KeyMintSecurityLevel); err != nil {
		return nil, fmt.Errorf("key description: keyMintSecurityLevel: %w", err)
	}
	if kd.Software, err = parseAuthorizationList(w.SoftwareEnforced); err != nil {
		return nil, fmt.Errorf("key description: softwareEnforced: %w", err)
	}
	if kd.Hardware, err = parseAuthorizationList(w.HardwareEnforced); err != nil {
		return nil, fmt.Errorf("key description: hardwareEnforced: %w", err)
	}
	return kd, nil
}

func securityLevelOf(v asn1.Enumerated) (SecurityLevel, error) {
	switch v {
	case 0:
		return SecuritySoftware, nil
	case 1:
		return SecurityTEE, nil
	case 2:
		return SecurityStrongBox, nil
	}
	return "", fmt.Errorf("unknown security level %d", v)
}

func parseAuthorizationList(raw asn1.RawValue) (AuthorizationList, error) {
	var list AuthorizationList
	if raw.Class != asn1.ClassUniversal || raw.Tag != asn1.TagSequence || !raw.IsCompound {
		return list, errors.New("not a SEQUENCE")
	}
	rest := raw.Bytes
	for len(rest) > 0 {
		var entry asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &entry); err != nil {
			return list, fmt.Errorf("entry %d: %w", len(list.Tags), err)
		}
		if entry.Class != asn1.ClassContextSpecific || !entry.IsCompound {
			return list, fmt.Errorf("entry %d: not an explicitly tagged field", len(list.Tags))
		}
		list.Tags = append(list.Tags, entry.Tag)
		switch entry.Tag {
		case tagRootOfTrust:
			if list.RootOfTrust != nil {
				return list, errors.New("rootOfTrust [704] appears twice")
			}
			if list.RootOfTrust, err = parseRootOfTrust(entry.Bytes); err != nil {
				return list, fmt.Errorf("rootOfTrust [704]: %w", err)
			}
		case tagAttestationApplicationID:
			if list.AppID != nil {
				return list, errors.New("attestationApplicationId [709] appears twice")
			}
			if list.AppID, err = parseAppID(entry.Bytes); err != nil {
				return list, fmt.Errorf("attestationApplicationId [709]: %w", err)
			}
		}
	}
	return list, nil
}

// exactlyOne unmarshals der into v and refuses trailing bytes.
func exactlyOne(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

func parseRootOfTrust(der []byte) (*RootOfTrust, error) {
	var w rootOfTrustASN1
	if err := exactlyOne(der, &w); err != nil {
		return nil, err
	}
	b := w.DeviceLocked
	if b.Class != asn1.ClassUniversal || b.Tag != asn1.TagBoolean || b.IsCompound || len(b.Bytes) != 1 {
		return nil, errors.New("deviceLocked is not a BOOLEAN")
	}
	rot := &RootOfTrust{
		VerifiedBootKey:  w.VerifiedBootKey,
		DeviceLocked:     b.Bytes[0] != 0,
		VerifiedBootHash: w.VerifiedBootHash,
	}
	switch w.VerifiedBootState {
	case 0:
		rot.VerifiedBootState = BootVerified
	case 1:
		rot.VerifiedBootState = BootSelfSigned
	case 2:
		rot.VerifiedBootState = BootUnverified
	case 3:
		rot.VerifiedBootState = BootFailed
	default:
		return nil, fmt.Errorf("unknown verifiedBootState %d", w.VerifiedBootState)
	}
	return rot, nil
}

func parseAppID(der []byte) (*AttestationApplicationID, error) {
	var octets []byte
	if err := exactlyOne(der, &octets); err != nil {
		return nil, fmt.Errorf("not an OCTET STRING: %w", err)
	}
	var w appIDASN1
	if err := exactlyOne(octets, &w); err != nil {
		return nil, err
	}
	id := &AttestationApplicationID{SignatureDigests: w.SignatureDigests}
	for _, p := range w.PackageInfos {
		id.Packages = append(id.Packages, PackageInfo{Name: string(p.PackageName), Version: p.Version})
	}
	return id, nil
}
