package fusion

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"

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

// blockBody is the JSON block response.
type blockBody struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	ReasonCode string `json:"reasonCode"`
	ExternalID string `json:"externalID,omitempty"`
	FusionSet  string `json:"fusionSet"`
}

// RenderBlock renders the user-facing block response: JSON when the Accept
// header prefers application/json, else plain text with the message and a
// reference the user can quote to support.
func RenderBlock(d *Decision, accept string) (contentType string, body []byte) {
	status, msg := d.Status, d.Message
	if status == 0 {
		status = DefaultStatus
	}
	if msg == "" {
		msg = DefaultMessage
	}
	ref := ""
	if d.Event != nil {
		ref = d.Event.ExternalID
	}
	if prefersJSON(accept) {
		b, _ := json.Marshal(blockBody{
			Error:      http.StatusText(status),
			Message:    msg,
			ReasonCode: string(d.Reason),
			ExternalID: ref,
			FusionSet:  d.FusionSet,
		})
		return "application/json", append(b, '\n')
	}
	text := msg + "\n"
	if ref != "" {
		text += "reference: " + ref + "\n"
	}
	return "text/plain; charset=utf-8", []byte(text)
}

// prefersJSON reports whether an Accept header ranks application/json (or
// a +json type) above text/plain and text/html.
func prefersJSON(accept string) bool {
	bestJSON, bestText := -1.0, -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
		}
		if q <= 0 {
			continue
		}
		switch {
		case mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")):
			bestJSON = max(bestJSON, q)
		case mt == "text/plain" || mt == "text/html" || mt == "text/*" || mt == "*/*":
			bestText = max(bestText, q)
		}
	}
	return bestJSON > 0 && bestJSON >= bestText
}
