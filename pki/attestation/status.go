package attestation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// MaxStatusListSize bounds the revocation status list accepted (Google's is a
// few hundred KiB).
const MaxStatusListSize = 16 << 20

// StatusList is Google's attestation certificate revocation status list (the
// JSON document Google publishes for attestation keys): serial numbers, in
// lowercase hex, whose keys are REVOKED or SUSPENDED. This package does no
// I/O: the caller fetches and refreshes the document and builds a new list.
type StatusList struct {
	entries map[string]string
}

type statusListJSON struct {
	Entries map[string]struct {
		Status string `json:"status"`
	} `json:"entries"`
}

// ParseStatusList reads the status list JSON. Every listed serial counts,
// whatever its status, as Google's guidance treats SUSPENDED like REVOKED
// until it is lifted.
func ParseStatusList(data []byte) (*StatusList, error) {
	if len(data) > MaxStatusListSize {
		return nil, fmt.Errorf("attestation status list is %d bytes, over the %d-byte limit", len(data), MaxStatusListSize)
	}
	var w statusListJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("attestation status list: %w", err)
	}
	if w.Entries == nil {
		return nil, fmt.Errorf("attestation status list: no \"entries\" object")
	}
	l := &StatusList{entries: make(map[string]string, len(w.Entries))}
	for serial, e := range w.Entries {
		key, ok := normalizeSerial(serial)
		if !ok {
			return nil, fmt.Errorf("attestation status list: entry %s is not a hex serial number", quote(serial))
		}
		l.entries[key] = e.Status
	}
	return l, nil
}

// normalizeSerial turns a hex serial into the form big.Int.Text(16) prints.
func normalizeSerial(s string) (string, bool) {
	n, ok := new(big.Int).SetString(strings.ToLower(s), 16)
	if !ok || n.Sign() < 0 {
		return "", false
	}
	return n.Text(16), true
}

// Len is the number of listed serials.
func (l *StatusList) Len() int { return len(l.entries) }

// Status returns the listed status of a serial (lowercase hex, as
// Result.ChainSerials holds them) and whether it is listed.
func (l *StatusList) Status(serial string) (string, bool) {
	if l == nil {
		return "", false
	}
	s, ok := l.entries[serial]
	return s, ok
}
