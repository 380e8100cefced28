package threat

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"

	"github.com/mccgate/mcc/threat/schemacheck"
)

// eventSchemaJSON is the JSON Schema of mcc.threat-event/v1. It is a copy of
// the published schema/threat-event.v1.json (go:embed cannot reach outside
// the package directory); a test keeps the two byte-identical.
//
//go:embed threat-event.v1.json
var eventSchemaJSON []byte

var eventSchema = sync.OnceValues(func() (*schemacheck.Schema, error) {
	return schemacheck.Compile(eventSchemaJSON)
})

// EventSchema returns the JSON Schema of mcc.threat-event/v1, the same bytes
// as the published schema/threat-event.v1.json.
func EventSchema() []byte {
	return bytes.Clone(eventSchemaJSON)
}

// ValidateEventJSON checks one encoded event against the mcc.threat-event/v1
// schema. Tests across the project call it on every event they see.
func ValidateEventJSON(b []byte) error {
	s, err := eventSchema()
	if err != nil {
		return fmt.Errorf("compiling the threat event schema: %w", err)
	}
	if err := s.Validate(b); err != nil {
		return fmt.Errorf("threat event: %w", err)
	}
	return nil
}
