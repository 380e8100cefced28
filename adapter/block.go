package adapter

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mccgate/mcc/fusion"
)

// HeaderExternalID carries a block's reference (the event's externalID) in
// the block response at both gateways, so that a client can quote it to
// support. Lower case, as HTTP/2 and Envoy write header names; Caddy's
// Header().Set canonicalizes it.
const HeaderExternalID = "x-mcc-external-id"

// Content types of a block response.
const (
	ContentTypeJSON = "application/json"
	ContentTypeText = "text/plain; charset=utf-8"
)

// BlockResponse is the HTTP response that blocks a request, the same bytes
// at both gateways: Caddy writes it (adding only Content-Length, which
// Envoy computes itself), envoyext turns it into a DeniedHttpResponse.
type BlockResponse struct {
	Status int
	// Header holds name/value pairs in a fixed order, names in lower case.
	Header [][2]string
	Body   []byte
}

// blockBody is the JSON block response.
type blockBody struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	ReasonCode string `json:"reasonCode"`
	ExternalID string `json:"externalID,omitempty"`
	FusionSet  string `json:"fusionSet"`
}

// Block renders the response for a Block decision: the set's status
// (fusion.DefaultStatus when unset); a body in JSON when the Accept header
// prefers application/json (or a +json type), else plain text with the
// set's message and a reference the user can quote; headers that keep the
// page out of caches (it names one client's failure) and from being
// sniffed as something else, and the reference as HeaderExternalID when
// there is one.
func Block(d *fusion.Decision, accept string) BlockResponse {
	status, msg := d.Status, d.Message
	if status == 0 {
		status = fusion.DefaultStatus
	}
	if msg == "" {
		msg = fusion.DefaultMessage
	}
	ref := ""
	if d.Event != nil {
		ref = d.Event.ExternalID
	}
	var ct string
	var body []byte
	if prefersJSON(accept) {
		b, _ := json.Marshal(blockBody{
			Error:      http.StatusText(status),
			Message:    msg,
			ReasonCode: string(d.Reason),
			ExternalID: ref,
			FusionSet:  d.FusionSet,
		})
		ct, body = ContentTypeJSON, append(b, '\n')
	} else {
		text := msg + "\n"
		if ref != "" {
			text += "reference: " + ref + "\n"
		}
		ct, body = ContentTypeText, []byte(text)
	}
	h := [][2]string{
		{"content-type", ct},
		{"cache-control", "no-store"},
		{"x-content-type-options", "nosniff"},
	}
	if ref != "" {
		h = append(h, [2]string{HeaderExternalID, ref})
	}
	return BlockResponse{Status: status, Header: h, Body: body}
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
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				// An unreadable weight ranks nothing.
				continue
			}
			q = f
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
