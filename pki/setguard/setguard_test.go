package setguard_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/pki/setguard"
)

func guardConfig(t *testing.T, ca *pki.CA) *fusion.Config {
	t.Helper()
	pemText := strings.ReplaceAll(strings.TrimSpace(string(ca.CertPEM())), "\n", "\n        ")
	cfg, err := fusion.ParseInline([]byte(`fusion_sets:
  - id: bank-prod
    app_id: com.example.bank
    mode: defense
    threat_events: true
    max_lifetime: 30d
    builds:
      blocked: [build-1337]
    trusted_ca:
      pem: |
        `+pemText+`
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestGuardAcceptsOnlyWhatTheSetAccepts(t *testing.T) {
	ca, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := guardConfig(t, ca)
	if _, err := setguard.New(cfg, "shop-prod", "com.example.bank"); !errors.Is(err, setguard.ErrNoSet) {
		t.Fatalf("missing set: %v", err)
	}
	if _, err := setguard.New(cfg, "bank-prod", "com.example.other"); !errors.Is(err, setguard.ErrWrongApp) {
		t.Fatalf("other app: %v", err)
	}
	g, err := setguard.New(cfg, "bank-prod", "com.example.bank")
	if err != nil {
		t.Fatal(err)
	}
	if g.Protections.Mode != "defense" || g.Protections.MaxLifetime != "720h0m0s" || len(g.Protections.TrustedCA) != 1 ||
		g.Protections.TrustedCA[0] != ca.Fingerprint() {
		t.Fatalf("protections %+v", g.Protections)
	}
	other, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, build string, days int) *pki.Issued {
		iss, err := ca.Issue(pki.IssueRequest{FusionSet: "bank-prod", AppID: "com.example.bank",
			Build: certid.BuildInfo{ID: build}, ValidFor: time.Duration(days) * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	ctx := context.Background()
	if err := g.Check(ctx, issue(ca, "b1", 7)); err != nil {
		t.Fatalf("a good certificate: %v", err)
	}
	var rej *setguard.RejectedError
	for name, iss := range map[string]*pki.Issued{
		"another CA":        issue(other, "b1", 7),
		"blocked build":     issue(ca, "build-1337", 7),
		"over max_lifetime": issue(ca, "b1", 60),
	} {
		if err := g.Check(ctx, iss); !errors.As(err, &rej) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
