package fusion

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/mccgate/mcc/threat"
)

// buildEvent fills every field of docs/ARCHITECTURE.md "Threat events" for a failure.
func (e *Engine) buildEvent(set *Set, req *Request, reason threat.Reason, data map[string]any, v *verdict, now time.Time, score, total int, enforce, block bool) *threat.Event {
	ev := &threat.Event{
		Schema:                  threat.SchemaID,
		ID:                      threat.NewEventID(),
		Time:                    now.UTC(),
		Name:                    threat.FeatureName,
		ReasonCode:              reason,
		ReasonData:              copyData(data, 0),
		Ref:                     "mcc/" + set.ID + "/" + string(reason),
		CurrentThreatEventScore: score,
		ThreatEventsScore:       total,
		Message:                 set.Message,
		FailSafeEnforce:         enforce,
		ExternalID:              externalID(req),
		FusionSet:               set.ID,
		Mode:                    set.Mode,
		Action:                  threat.ActionReported,
		Gateway:                 firstNonEmpty(req.Gateway, e.opts.Gateway),
		Node:                    firstNonEmpty(req.Node, e.opts.Node),
		ClientIP:                req.ClientIP,
		SNI:                     req.SNI,
		Host:                    req.Host,
		Method:                  req.Method,
		Path:                    req.Path,
	}
	if len(ev.ReasonData) == 0 {
		ev.ReasonData = nil
	}
	if block {
		ev.Action = threat.ActionBlocked
	}
	if v != nil {
		if v.cert != nil {
			ci := *v.cert
			ev.Certificate = &ci
		}
		if v.hasBuild {
			ev.FusedAppToken = v.build.ID
			if !v.build.Date.IsZero() {
				ev.BuildDate = v.build.Date.UTC().Format(time.RFC3339)
			}
			ev.BuildUser = v.build.User
			ev.BuildHost = v.build.Host
			ev.SDKVersion = v.build.SDK
		}
	}
	if len(set.DeviceHeaders) > 0 && req.Header != nil {
		for key, header := range set.DeviceHeaders {
			if val := deviceValue(req.Header, header); val != "" {
				if ev.Device == nil {
					ev.Device = make(map[string]string, len(set.DeviceHeaders))
				}
				ev.Device[key] = val
			}
		}
	}
	return ev
}

func externalID(req *Request) string {
	if req.RequestID != "" {
		return eventText(req.RequestID, 128)
	}
	return threat.NewEventID()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
