package pki

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// CanonicalRecord turns a record received as a JSON value (an API body
// member, whitespace changed in transit) back into the record file's
// bytes, which VerifyRecord checks. Only whitespace is restored: keys,
// their order and string escapes must be as the CA signed them, so a
// record re-serialized with other escapes or another key order is refused
// like an edited file.
func CanonicalRecord(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return nil, fmt.Errorf("record is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}
