package threat

import (
	"fmt"
	"strings"
)

// SubjectKind is one part of a Subject: the client address, the device id
// or the certificate. Its values index Subject's parts in every store.
type SubjectKind uint8

// The subject kinds, in the order of Subject's fields.
const (
	SubjectAddress SubjectKind = iota
	SubjectDevice
	SubjectCertificate
)

// AllSubjectKinds lists the kinds in a stable order.
var AllSubjectKinds = []SubjectKind{SubjectAddress, SubjectDevice, SubjectCertificate}

var subjectKindNames = [...]string{
	SubjectAddress:     "address",
	SubjectDevice:      "device",
	SubjectCertificate: "certificate",
}

// String is the kind's name in configuration and in `mcc ban`: "address",
// "device" or "certificate".
func (k SubjectKind) String() string {
	if int(k) < len(subjectKindNames) {
		return subjectKindNames[k]
	}
	return fmt.Sprintf("SubjectKind(%d)", uint8(k))
}

// ParseSubjectKind parses a kind's name.
func ParseSubjectKind(s string) (SubjectKind, error) {
	for k, name := range subjectKindNames {
		if s == name {
			return SubjectKind(k), nil
		}
	}
	return 0, fmt.Errorf("unknown subject %q: want one of %s", s, strings.Join(subjectKindNames[:], ", "))
}

// SubjectSet is a set of subject kinds (a bit per kind).
type SubjectSet uint8

// Subject sets used by the reason table and as defaults.
const (
	// NoSubjects scores nothing.
	NoSubjects SubjectSet = 0
	// AllSubjects is every kind: address, device and certificate.
	AllSubjects = SubjectSet(1<<SubjectAddress | 1<<SubjectDevice | 1<<SubjectCertificate)
	// ClientSubjects are the subjects that belong to one client: its
	// address and its device id, never a certificate that many genuine
	// installs may share.
	ClientSubjects = SubjectSet(1<<SubjectAddress | 1<<SubjectDevice)
)

// SubjectsOf returns the set holding kinds.
func SubjectsOf(kinds ...SubjectKind) SubjectSet {
	var s SubjectSet
	for _, k := range kinds {
		s |= 1 << k
	}
	return s
}

// Has reports whether k is in the set.
func (s SubjectSet) Has(k SubjectKind) bool { return s&(1<<k) != 0 }

// String lists the set's kinds, comma separated ("" when empty).
func (s SubjectSet) String() string {
	var names []string
	for _, k := range AllSubjectKinds {
		if s.Has(k) {
			names = append(names, k.String())
		}
	}
	return strings.Join(names, ",")
}

// Only returns the subject with the parts not in set cleared.
func (sub Subject) Only(set SubjectSet) Subject {
	if !set.Has(SubjectAddress) {
		sub.IP = ""
	}
	if !set.Has(SubjectDevice) {
		sub.DeviceID = ""
	}
	if !set.Has(SubjectCertificate) {
		sub.CertSHA = ""
	}
	return sub
}

// Part returns the subject's value for kind k.
func (sub Subject) Part(k SubjectKind) string {
	switch k {
	case SubjectAddress:
		return sub.IP
	case SubjectDevice:
		return sub.DeviceID
	case SubjectCertificate:
		return sub.CertSHA
	}
	return ""
}

// Empty reports whether the subject has no part at all.
func (sub Subject) Empty() bool { return sub.IP == "" && sub.DeviceID == "" && sub.CertSHA == "" }
