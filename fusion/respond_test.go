package fusion_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

func TestRenderBlock(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	e := loadEngine(t, c.SetFile, fusion.Options{})
	d := e.Evaluate(context.Background(), c.SetID, request(c.Case(t, "revoked_serial"), "192.0.2.1"))

	for _, accept := range []string{"application/json", "text/html;q=0.5, application/json", "application/problem+json", "*/*;q=0.1, application/json;q=0.9"} {
		ct, body := fusion.RenderBlock(&d, accept)
		if ct != "application/json" {
			t.Errorf("Accept %q: content type %q", accept, ct)
			continue
		}
		var got map[string]string
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("Accept %q: %v", accept, err)
		}
		want := map[string]string{"error": "Forbidden", "message": fusion.DefaultMessage, "reasonCode": "CERT_REVOKED",
			"externalID": "req-revoked_serial", "fusionSet": "bank-prod"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("Accept %q: %s = %q, want %q", accept, k, got[k], v)
			}
		}
	}
	for _, accept := range []string{"", "text/html", "*/*", "application/json;q=0.2, text/plain", "application/json;q=0"} {
		ct, body := fusion.RenderBlock(&d, accept)
		if !strings.HasPrefix(ct, "text/plain") || string(body) != fusion.DefaultMessage+"\nreference: req-revoked_serial\n" {
			t.Errorf("Accept %q: %q %q", accept, ct, body)
		}
	}
}
