package adapter

import (
	"encoding/json"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
)

func TestBlock(t *testing.T) {
	d := fusion.Decision{Action: fusion.Block, Reason: threat.ReasonCertRevoked, FusionSet: "bank-prod",
		Event: &threat.Event{ExternalID: "req-1"}}

	for _, accept := range []string{"application/json", "text/html;q=0.5, application/json", "application/problem+json", "*/*;q=0.1, application/json;q=0.9"} {
		b := Block(&d, accept)
		if b.Status != fusion.DefaultStatus || header(b, "content-type") != ContentTypeJSON {
			t.Errorf("Accept %q: %d %q", accept, b.Status, header(b, "content-type"))
			continue
		}
		var got map[string]string
		if err := json.Unmarshal(b.Body, &got); err != nil {
			t.Fatalf("Accept %q: %v", accept, err)
		}
		want := map[string]string{"error": "Forbidden", "message": fusion.DefaultMessage, "reasonCode": "CERT_REVOKED",
			"externalID": "req-1", "fusionSet": "bank-prod"}
		if len(got) != len(want) {
			t.Errorf("Accept %q: body %v, want %v", accept, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("Accept %q: %s = %q, want %q", accept, k, got[k], v)
			}
		}
	}
	for _, accept := range []string{"", "text/html", "*/*", "application/json;q=0.2, text/plain", "application/json;q=0", "application/json;q=oops, text/plain", "\x00;;,"} {
		b := Block(&d, accept)
		if header(b, "content-type") != ContentTypeText || string(b.Body) != fusion.DefaultMessage+"\nreference: req-1\n" {
			t.Errorf("Accept %q: %q %q", accept, header(b, "content-type"), b.Body)
		}
	}

	// Headers: the same set whatever the body, the reference only when
	// there is one.
	b := Block(&d, "")
	want := [][2]string{{"content-type", ContentTypeText}, {"cache-control", "no-store"}, {"x-content-type-options", "nosniff"}, {HeaderExternalID, "req-1"}}
	if len(b.Header) != len(want) {
		t.Fatalf("headers %v, want %v", b.Header, want)
	}
	for i := range want {
		if b.Header[i] != want[i] {
			t.Errorf("header %d = %v, want %v", i, b.Header[i], want[i])
		}
	}
	custom := fusion.Decision{Action: fusion.Block, Status: 426, Message: "Update the app.", Reason: threat.ReasonBuildBlocked, FusionSet: "s"}
	b = Block(&custom, "application/json")
	if b.Status != 426 || header(b, HeaderExternalID) != "" {
		t.Errorf("custom status: %d, external id %q", b.Status, header(b, HeaderExternalID))
	}
	var got map[string]string
	if err := json.Unmarshal(b.Body, &got); err != nil || got["error"] != "Upgrade Required" || got["message"] != "Update the app." {
		t.Errorf("custom body %s (%v)", b.Body, err)
	}
	if _, ok := got["externalID"]; ok {
		t.Errorf("externalID without an event: %s", b.Body)
	}
	if b = Block(&custom, ""); string(b.Body) != "Update the app.\n" {
		t.Errorf("custom text body %q", b.Body)
	}
}

func header(b BlockResponse, name string) string {
	for _, kv := range b.Header {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}
