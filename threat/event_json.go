package threat

import (
	"encoding/json"
	"fmt"
)

// eventFields has Event's fields and tags but not its methods, so that
// MarshalJSON and UnmarshalJSON can use the standard encoder without
// recursing into themselves.
type eventFields Event

// MarshalJSON encodes the event as one flat JSON object: Device keys listed
// in DeviceKeys are written at the top level with the other context keys
// (before fusionSet), in DeviceKeys order; any other Device key, and any
// empty value, is dropped. Optional keys with no value are left out. String
// values in ReasonData that contain PEM armour are replaced by RedactedPEM,
// so a careless caller cannot leak a certificate or key.
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 1024))
}

// UnmarshalJSON decodes an event written by MarshalJSON: the top-level keys
// named in DeviceKeys go back into Device. Unknown keys are ignored so that an
// older receiver can read a newer event; the JSON Schema
// (schema/threat-event.v1.json) is the strict check.
func (e *Event) UnmarshalJSON(b []byte) error {
	var f eventFields
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("decoding threat event: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return fmt.Errorf("decoding threat event: %w", err)
	}
	for _, k := range DeviceKeys {
		raw, ok := top[k]
		if !ok {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decoding threat event: device key %q: %w", k, err)
		}
		if f.Device == nil {
			f.Device = make(map[string]string, 4)
		}
		f.Device[k] = v
	}
	*e = Event(f)
	return nil
}

// IsDeviceKey reports whether k is one of DeviceKeys.
func IsDeviceKey(k string) bool {
	for _, d := range DeviceKeys {
		if d == k {
			return true
		}
	}
	return false
}

// RedactedPEM replaces any PEM block found in event reason data.
const RedactedPEM = "[redacted PEM]"

// pemArmour is what every PEM block starts with, certificate or key.
const pemArmour = "-----BEGIN"
