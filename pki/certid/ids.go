package certid

import (
	"fmt"
	"regexp"
)

// The id rules, shared by the issuer (pki, `mcc issue`) and the fusion set
// loader, so that mcc never issues a certificate for a set id or app id
// that no fusion file could name.
var (
	// Set ids go into the identity URI's host and into Envoy resource
	// names: lowercase DNS labels (no dots: "bank.prod" is refused).
	reSetID = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// App ids are the identity URI's path, usually a bundle id.
	reAppID = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$`)
	// Install ids are chosen by the app (a UUID): short and URL-safe, so
	// they read the same in the certificate, logs and URLs.
	reInstallID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// MaxInstallIDLen is the longest install id, in bytes.
const MaxInstallIDLen = 64

// CheckSetID reports why id is not a valid fusion set id, or nil.
func CheckSetID(id string) error {
	if id == "" {
		return fmt.Errorf("fusion set id is empty: use a lowercase DNS label such as \"bank-prod\"")
	}
	if !reSetID.MatchString(id) {
		return fmt.Errorf("invalid fusion set id %q: must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters, no leading or trailing '-', no '.'), since it goes into the identity URI SAN and Envoy resource names", id)
	}
	return nil
}

// CheckAppID reports why id is not a valid app id, or nil.
func CheckAppID(id string) error {
	if id == "" {
		return fmt.Errorf("app id is empty: use the app identity, such as \"com.example.bank\"")
	}
	if !reAppID.MatchString(id) {
		return fmt.Errorf("invalid app id %q: use letters, digits, '.', '-' and '_', starting with a letter or digit, at most 253 characters (it is the path of the identity URI SAN)", id)
	}
	return nil
}

// CheckInstallID reports why id is not a valid install id, or nil. The id
// comes from the device, so the error states the rule and does not quote
// the id (it may be long or hold control characters).
func CheckInstallID(id string) error {
	if id == "" {
		return fmt.Errorf("install id is empty: use the install's UUID")
	}
	if !reInstallID.MatchString(id) {
		return fmt.Errorf("invalid install id: use 1 to %d letters, digits, '.', '-' or '_' (such as a UUID)", MaxInstallIDLen)
	}
	return nil
}
