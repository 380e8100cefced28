// Package certid reads and writes the identity and build metadata that mcc
// puts into an app build's client certificate. It is the single documented
// place for that format, shared by the issuer (pki) and the policy engine
// (fusion):
//
//   - Identity: exactly one URI SAN "mcc://<fusion-set-id>/<app-id>".
//   - Build metadata: the Subject attribute description (OID 2.5.4.13) holding
//     "mcc-build/v1?" followed by URL query encoding of id, date (RFC 3339),
//     user, host and sdk. The Subject also carries CN=<app id>,
//     O=<fusion set id> and serialNumber=<build id> for humans.
//   - Install certificates (issued to one app install at enrollment, for a
//     key made on the device) carry the same identity URI and the same
//     Subject, except that the description starts with "mcc-install/v1?"
//     and adds install=<install id> (CheckInstallID) to the build
//     parameters copied from the build certificate the install enrolled
//     with. One parser (ParseBuildInfo) reads both kinds, so a gateway
//     applies build rules (blocked builds, min_build_date) to the installs
//     of a build exactly as to the build, and a certificate says by itself
//     which kind it is (BuildInfo.Kind).
//
// Standard attribute OIDs parse everywhere (Go, OpenSSL, BoringSSL), unlike a
// private extension OID, which would need an arc we do not own, and unlike a
// 2.25.<uuid> OID, which Go's x509 parser refuses.
package certid

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Scheme is the URI scheme of the identity SAN.
const Scheme = "mcc"

// BuildPrefix starts the build metadata value in the description attribute.
const BuildPrefix = "mcc-build/v1?"

// InstallPrefix starts the metadata value of an install certificate.
const InstallPrefix = "mcc-install/v1?"

// installParam is the query key of the install id in InstallPrefix values.
const installParam = "install"

// OIDDescription is X.520 description (2.5.4.13).
var oidDescription = asn1.ObjectIdentifier{2, 5, 4, 13}

// IdentityURI returns "mcc://<setID>/<appID>".
func IdentityURI(setID, appID string) string {
	return Scheme + "://" + setID + "/" + appID
}

// Kind says whether a certificate was issued to an app build (shipped inside
// the app) or to one install of it (enrolled with a device-made key).
type Kind uint8

const (
	// KindBuild is the zero value, so build metadata compares as before.
	KindBuild Kind = iota
	KindInstall
)

// String returns "build" or "install".
func (k Kind) String() string {
	switch k {
	case KindBuild:
		return "build"
	case KindInstall:
		return "install"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// BuildInfo is an app build's metadata as carried in its certificate. For
// an install certificate, Kind is KindInstall and InstallID names the
// install; the other fields are the build's.
type BuildInfo struct {
	ID        string
	Date      time.Time
	User      string
	Host      string
	SDK       string
	Kind      Kind
	InstallID string // set only when Kind is KindInstall
}

// Encode returns the description attribute value for b: BuildPrefix and the
// build parameters, or for KindInstall InstallPrefix, the same parameters
// and install=<InstallID>.
func (b BuildInfo) Encode() string {
	v := url.Values{}
	v.Set("id", b.ID)
	if !b.Date.IsZero() {
		v.Set("date", b.Date.UTC().Format(time.RFC3339))
	}
	if b.User != "" {
		v.Set("user", b.User)
	}
	if b.Host != "" {
		v.Set("host", b.Host)
	}
	if b.SDK != "" {
		v.Set("sdk", b.SDK)
	}
	if b.Kind == KindInstall {
		v.Set(installParam, b.InstallID)
		return InstallPrefix + v.Encode()
	}
	return BuildPrefix + v.Encode()
}

// Subject returns the certificate Subject for an app build.
func Subject(setID, appID string, b BuildInfo) pkix.Name {
	return pkix.Name{
		CommonName:   appID,
		Organization: []string{setID},
		SerialNumber: b.ID,
		ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: oidDescription, Value: b.Encode()},
		},
	}
}

// ParseBuildInfo reads the build metadata from cert, of a build certificate
// (BuildPrefix) or an install certificate (InstallPrefix, whose install id
// must pass CheckInstallID). ok is false when the certificate carries none;
// err is set when it carries a malformed one or more than one.
func ParseBuildInfo(cert *x509.Certificate) (info BuildInfo, ok bool, err error) {
	for _, atv := range cert.Subject.Names {
		if !atv.Type.Equal(oidDescription) {
			continue
		}
		s, isStr := atv.Value.(string)
		if !isStr {
			continue
		}
		kind, query, found := splitPrefix(s)
		if !found {
			continue
		}
		if ok {
			return BuildInfo{}, true, fmt.Errorf("more than one %s or %s attribute", BuildPrefix, InstallPrefix)
		}
		ok = true
		v, perr := url.ParseQuery(query)
		if perr != nil {
			return BuildInfo{}, true, fmt.Errorf("build metadata: %w", perr)
		}
		info = BuildInfo{ID: v.Get("id"), User: v.Get("user"), Host: v.Get("host"), SDK: v.Get("sdk")}
		if d := v.Get("date"); d != "" {
			t, terr := time.Parse(time.RFC3339, d)
			if terr != nil {
				return BuildInfo{}, true, fmt.Errorf("build metadata: date: %w", terr)
			}
			info.Date = t
		}
		if info.ID == "" {
			return BuildInfo{}, true, fmt.Errorf("build metadata: missing id")
		}
		if kind == KindInstall {
			info.Kind, info.InstallID = KindInstall, v.Get(installParam)
			if err := CheckInstallID(info.InstallID); err != nil {
				return BuildInfo{}, true, fmt.Errorf("install metadata: %w", err)
			}
		}
	}
	return info, ok, nil
}

// splitPrefix returns the kind named by s's prefix and the query after it.
func splitPrefix(s string) (Kind, string, bool) {
	if q, found := strings.CutPrefix(s, BuildPrefix); found {
		return KindBuild, q, true
	}
	if q, found := strings.CutPrefix(s, InstallPrefix); found {
		return KindInstall, q, true
	}
	return 0, "", false
}

// Identity returns the fusion set and app of the certificate's mcc URI SAN and
// how many mcc URI SANs it has (exactly one is valid).
func Identity(cert *x509.Certificate) (setID, appID string, n int) {
	for _, u := range cert.URIs {
		if u.Scheme != Scheme {
			continue
		}
		n++
		if n == 1 {
			setID = u.Host
			appID = strings.TrimPrefix(u.Path, "/")
		}
	}
	return setID, appID, n
}
