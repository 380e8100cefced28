// Package schema holds the published JSON Schemas of mcc's contracts, so
// that code and tests read the one file in this directory instead of a copy.
package schema

import (
	"bytes"
	_ "embed"
)

//go:embed threat-event.v1.json
var threatEventV1 []byte

// ThreatEventV1 returns the JSON Schema of mcc.threat-event/v1
// (threat-event.v1.json in this directory). The caller owns the copy.
func ThreatEventV1() []byte {
	return bytes.Clone(threatEventV1)
}
