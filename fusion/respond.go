package fusion

import (
	"encoding/base64"
	"encoding/json"

	"github.com/mccgate/mcc/threat"
)

// Headers passed to the upstream in detection mode, the same from both
// gateways.
const (
	// HeaderEvent carries the event JSON, base64url without padding.
	HeaderEvent = "Mcc-Threat-Event"
	// HeaderReason carries the plain reason code.
	HeaderReason = "Mcc-Reason-Code"
	// HeaderFusionSet carries the fusion set id.
	HeaderFusionSet = "Mcc-Fusion-Set"
)

// UpstreamHeaders returns the headers to pass to the upstream: the event of
// a request that was reported but allowed (detection mode). It returns nil
// when there is nothing to pass on.
func (d *Decision) UpstreamHeaders() map[string]string {
	if d == nil || d.Action != Allow || d.Reason == threat.ReasonNone || d.Event == nil {
		return nil
	}
	b, err := json.Marshal(d.Event)
	if err != nil {
		return map[string]string{HeaderReason: string(d.Reason), HeaderFusionSet: d.FusionSet}
	}
	return map[string]string{
		HeaderEvent:     base64.RawURLEncoding.EncodeToString(b),
		HeaderReason:    string(d.Reason),
		HeaderFusionSet: d.FusionSet,
	}
}

// The block response itself (status, headers, JSON or text body) is HTTP
// shape, the same at both gateways: adapter.Block renders it from a Decision.
