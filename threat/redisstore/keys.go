package redisstore

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/mccgate/mcc/threat"
)

// MaxKeyValue is the longest subject value used verbatim in a key; longer
// values are replaced by their SHA-256 digest.
const MaxKeyValue = 128

// keyPrefix starts every key this package writes.
const keyPrefix = "mcc:{"

// subjectParts names the three parts of a Subject in keys, in the order of
// subjectValues.
var subjectParts = [3]string{"ip", "dev", "cert"}

func subjectValues(s threat.Subject) [3]string {
	return [3]string{s.IP, s.DeviceID, s.CertSHA}
}

// keyValue is v as it appears in a key.
func keyValue(v string) string {
	if len(v) <= MaxKeyValue {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// scoreKey and banKey spell the key layout documented in doc.go.
func scoreKey(ns, part, v string) string {
	return keyPrefix + ns + "}:score:" + part + ":" + keyValue(v)
}

func banKey(ns, part, v string) string {
	return keyPrefix + ns + "}:ban:" + part + ":" + keyValue(v)
}

// addKeys returns the score and ban key of each of s's non-empty parts, in
// pairs: score, ban, score, ban, ... as the add script expects them.
func addKeys(ns string, s threat.Subject) []string {
	vals := subjectValues(s)
	keys := make([]string, 0, 2*len(vals))
	for i, v := range vals {
		if v == "" {
			continue
		}
		keys = append(keys, scoreKey(ns, subjectParts[i], v), banKey(ns, subjectParts[i], v))
	}
	return keys
}

// banKeys returns the ban key of each of s's non-empty parts.
func banKeys(ns string, s threat.Subject) []string {
	vals := subjectValues(s)
	keys := make([]string, 0, len(vals))
	for i, v := range vals {
		if v == "" {
			continue
		}
		keys = append(keys, banKey(ns, subjectParts[i], v))
	}
	return keys
}
