package schematest

import (
	"fmt"
	"sync"

	"github.com/mccgate/mcc/schema"
)

var threatEvent = sync.OnceValues(func() (*Schema, error) {
	return Compile(schema.ThreatEventV1())
})

// ValidateEventJSON checks one encoded event against the published
// mcc.threat-event/v1 schema (schema/threat-event.v1.json). Tests across
// the project call it on every event they see.
func ValidateEventJSON(b []byte) error {
	s, err := threatEvent()
	if err != nil {
		return fmt.Errorf("compiling the threat event schema: %w", err)
	}
	if err := s.Validate(b); err != nil {
		return fmt.Errorf("threat event: %w", err)
	}
	return nil
}
