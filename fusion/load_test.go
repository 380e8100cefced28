package fusion_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// validSet is a minimal valid set; the table below breaks it one way at a
// time. Line numbers in the table count from the first line of the file.
const validSet = `fusion_sets:
  - id: bank-prod
    trusted_ca:
      file: ca.pem
    app_id: com.example.bank
    mode: defense
    threat_events: true
`

type wantProblem struct {
	line  int
	field string
	msg   string // substring
}

func loadString(t *testing.T, dir, yaml string) (*fusion.Config, error) {
	t.Helper()
	path := filepath.Join(dir, "sets.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return fusion.LoadFile(path)
}

func TestLoadValidDefaults(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	cfg, err := loadString(t, c.Dir, validSet)
	if err != nil {
		t.Fatalf("valid set refused: %v", err)
	}
	s, ok := cfg.Sets["bank-prod"]
	if !ok || len(cfg.IDs) != 1 || cfg.IDs[0] != "bank-prod" {
		t.Fatalf("sets %v ids %v", cfg.Sets, cfg.IDs)
	}
	if s.Status != 403 || s.Message != fusion.DefaultMessage || s.MaxChainDepth != 4 || s.MinRSABits != 2048 ||
		!s.RequireClientAuthEKU || strings.Join(s.AllowedCurves, ",") != "P-256,P-384" {
		t.Errorf("defaults not applied: %+v", s)
	}
	if s.Mode != threat.ModeDefense || !s.Events || s.IdentityURI != "mcc://bank-prod/com.example.bank" {
		t.Errorf("mode/events/identity: %v %v %q", s.Mode, s.Events, s.IdentityURI)
	}
	if s.FailSafe.Enabled() {
		t.Errorf("fail-safe enabled without fail_safe: %+v", s.FailSafe)
	}
	if got := s.Score(threat.ReasonCertRevoked); got != threat.DefaultScores[threat.ReasonCertRevoked] {
		t.Errorf("default score %d", got)
	}
	if string(s.CAPEM()) != string(c.CAPEM) {
		t.Errorf("CAPEM differs from the CA file")
	}
	abs, _ := filepath.Abs(filepath.Join(c.Dir, "sets.yaml"))
	if w := cfg.WatchedFiles(); len(w) != 2 || w[0] != abs || w[1] != c.CAFile {
		t.Errorf("WatchedFiles = %v", w)
	}

	withFS := strings.Replace(validSet, "    threat_events: true\n", "    threat_events: true\n    fail_safe:\n      threshold: 50\n    scores:\n      CERT_REVOKED: 70\n", 1)
	cfg, err = loadString(t, c.Dir, withFS)
	if err != nil {
		t.Fatalf("fail_safe set refused: %v", err)
	}
	s = cfg.Sets["bank-prod"]
	if s.FailSafe != (threat.Policy{Threshold: 50, Window: 10 * time.Minute, BanFor: 15 * time.Minute}) {
		t.Errorf("fail_safe defaults: %+v", s.FailSafe)
	}
	if s.Score(threat.ReasonCertRevoked) != 70 || s.Score(threat.ReasonNoClientCert) != threat.DefaultScores[threat.ReasonNoClientCert] {
		t.Errorf("scores not applied")
	}
}

func TestLoadProblems(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	otherCA := writeOtherCRL(t, c.Dir)
	_ = otherCA
	if err := os.WriteFile(filepath.Join(c.Dir, "notpem.pem"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "bad-list.txt"), []byte("# ok\nabc\nnot-hex!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	if err := os.WriteFile(filepath.Join(c.Dir, "withkey.pem"), append(append([]byte{}, c.CAPEM...), keyPEM...), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		yaml string
		want []wantProblem
	}{
		{"unknown top-level key", validSet + "colour: blue\n",
			[]wantProblem{{8, "colour", "unknown field"}}},
		{"unknown set key", strings.Replace(validSet, "    mode: defense\n", "    mode: defense\n    moed: detection\n", 1),
			[]wantProblem{{7, "fusion_sets[0].moed", "unknown field"}}},
		{"wrong type", strings.Replace(validSet, "threat_events: true", "threat_events: sometimes", 1),
			[]wantProblem{{7, "fusion_sets[0].threat_events", "wrong type"}}},
		{"wrong type int", validSet + "    status: loud\n",
			[]wantProblem{{8, "fusion_sets[0].status", "want an integer"}}},
		{"bad duration", validSet + "    max_lifetime: forever\n",
			[]wantProblem{{8, "fusion_sets[0].max_lifetime", "invalid duration"}}},
		{"missing CA file", strings.Replace(validSet, "file: ca.pem", "file: nope.pem", 1),
			[]wantProblem{{4, "fusion_sets[0].trusted_ca.file", "file not found"}}},
		{"unparsable PEM", strings.Replace(validSet, "file: ca.pem", "file: notpem.pem", 1),
			[]wantProblem{{4, "fusion_sets[0].trusted_ca.file", "no PEM certificate"}}},
		{"key in CA bundle", strings.Replace(validSet, "file: ca.pem", "file: withkey.pem", 1),
			[]wantProblem{{4, "fusion_sets[0].trusted_ca.file", "PRIVATE KEY"}}},
		{"inline PEM garbage", strings.Replace(validSet, "file: ca.pem", "pem: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"", 1),
			[]wantProblem{{4, "fusion_sets[0].trusted_ca.pem", "certificate 1"}}},
		{"no CA", strings.Replace(validSet, "    trusted_ca:\n      file: ca.pem\n", "", 1),
			[]wantProblem{{2, "fusion_sets[0].trusted_ca", "required"}}},
		{"detection without events", strings.Replace(strings.Replace(validSet, "mode: defense", "mode: detection", 1), "threat_events: true", "threat_events: false", 1),
			[]wantProblem{{7, "fusion_sets[0].threat_events", "neither block nor report"}}},
		{"unknown mode", strings.Replace(validSet, "mode: defense", "mode: offense", 1),
			[]wantProblem{{6, "fusion_sets[0].mode", "unknown mode"}}},
		{"score without fail_safe", validSet + "    scores:\n      CERT_REVOKED: 10\n",
			[]wantProblem{{8, "fusion_sets[0].scores", "without fail_safe"}}},
		{"unknown reason code", validSet + "    fail_safe:\n      threshold: 10\n    scores:\n      CERT_STOLEN: 10\n",
			[]wantProblem{{11, "fusion_sets[0].scores.CERT_STOLEN", "unknown reason code"}}},
		{"fail_safe without threshold", validSet + "    fail_safe:\n      window: 5m\n",
			[]wantProblem{{8, "fusion_sets[0].fail_safe.threshold", "required"}}},
		{"unknown device key", validSet + "    device_headers:\n      shoeSize: X-Shoe\n",
			[]wantProblem{{9, "fusion_sets[0].device_headers.shoeSize", "unknown device key"}}},
		{"bad header name", validSet + "    device_headers:\n      deviceID: \"X Device\"\n",
			[]wantProblem{{9, "fusion_sets[0].device_headers.deviceID", "not an HTTP header name"}}},
		{"duplicate set id", validSet + strings.TrimPrefix(validSet, "fusion_sets:\n"),
			[]wantProblem{{8, "fusion_sets[1].id", "duplicate fusion set id \"bank-prod\" (first defined at line 2)"}}},
		{"uppercase set id", strings.Replace(validSet, "id: bank-prod", "id: Bank_Prod", 1),
			[]wantProblem{{2, "fusion_sets[0].id", "lowercase DNS label"}}},
		{"set id with slash", strings.Replace(validSet, "id: bank-prod", "id: bank/prod", 1),
			[]wantProblem{{2, "fusion_sets[0].id", "lowercase DNS label"}}},
		{"bad app id", strings.Replace(validSet, "app_id: com.example.bank", "app_id: \"com example\"", 1),
			[]wantProblem{{5, "fusion_sets[0].app_id", "invalid app id"}}},
		{"bad serial", validSet + "    revocation:\n      serials: [\"zz\"]\n",
			[]wantProblem{{9, "fusion_sets[0].revocation.serials[0]", "not hex"}}},
		{"bad fingerprint", validSet + "    revocation:\n      fingerprints:\n        - sha256:abcd\n",
			[]wantProblem{{10, "fusion_sets[0].revocation.fingerprints[0]", "64 hex digits"}}},
		{"bad revocation list line", validSet + "    revocation:\n      files: [bad-list.txt]\n",
			[]wantProblem{{9, "fusion_sets[0].revocation.files[0]", "bad-list.txt:3: serial \"not-hex!\" is not hex"}}},
		{"missing revocation list", validSet + "    revocation:\n      files: [gone.txt]\n",
			[]wantProblem{{9, "fusion_sets[0].revocation.files[0]", "file not found"}}},
		{"CRL from another CA", validSet + "    revocation:\n      crls: [other-crl.pem]\n",
			[]wantProblem{{9, "fusion_sets[0].revocation.crls[0]", "does not verify"}}},
		{"bad curve", validSet + "    crypto:\n      allowed_curves: [P-256, secp256k1]\n",
			[]wantProblem{{9, "fusion_sets[0].crypto.allowed_curves[1]", "unknown curve"}}},
		{"bad min_rsa_bits", validSet + "    crypto:\n      min_rsa_bits: 512\n",
			[]wantProblem{{9, "fusion_sets[0].crypto.min_rsa_bits", "out of range"}}},
		{"bad chain depth", validSet + "    max_chain_depth: 50\n",
			[]wantProblem{{8, "fusion_sets[0].max_chain_depth", "out of range"}}},
		{"bad status", validSet + "    status: 200\n",
			[]wantProblem{{8, "fusion_sets[0].status", "not an HTTP error status"}}},
		{"bad min_build_date", validSet + "    builds:\n      min_build_date: yesterday\n",
			[]wantProblem{{9, "fusion_sets[0].builds.min_build_date", "RFC 3339"}}},
		{"bad pin", validSet + "    spki_pins: [\"abc\"]\n",
			[]wantProblem{{8, "fusion_sets[0].spki_pins[0]", "base64 SHA-256"}}},
		{"bad store", "store: mongodb://x\n" + validSet,
			[]wantProblem{{1, "store", "is neither \"memory\" nor a redis:// or rediss:// URL"}}},
		{"no sets", "fusion_sets: []\n",
			[]wantProblem{{1, "fusion_sets", "at least one"}}},
		{"YAML syntax", "fusion_sets:\n  - id: [\n",
			[]wantProblem{{2, "", "invalid YAML"}}},
		{"two documents", validSet + "---\n" + validSet,
			[]wantProblem{{8, "", "more than one YAML document"}}},
		{"not a mapping", "- id: x\n",
			[]wantProblem{{1, "", "expected a mapping"}}},
		{"empty file", "",
			[]wantProblem{{1, "", "empty file"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadString(t, c.Dir, tc.yaml)
			if err == nil {
				t.Fatalf("accepted: %v", cfg.IDs)
			}
			var le *fusion.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T %v, want *LoadError", err, err)
			}
			if len(le.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(le.Problems), len(tc.want), err)
			}
			for i, w := range tc.want {
				p := le.Problems[i]
				if p.Line != w.line || p.Field != w.field || !strings.Contains(p.Msg, w.msg) {
					t.Errorf("problem %d = %q\nwant line %d field %q msg containing %q", i, p.Error(), w.line, w.field, w.msg)
				}
				if !strings.HasPrefix(p.Error(), filepath.Join(c.Dir, "sets.yaml")+":") {
					t.Errorf("problem %q does not start with FILE:LINE", p.Error())
				}
			}
		})
	}
}

// TestLoadReportsEveryProblem checks that problems are collected, not
// stopped at the first, across type and semantic errors and across sets.
func TestLoadReportsEveryProblem(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	yaml := `fusion_sets:
  - id: Bad_ID
    trusted_ca:
      file: missing.pem
    app_id: com.example.bank
    mode: detection
    threat_events: false
    max_chain_depth: deep
    scores:
      NOT_A_REASON: 5
  - id: ok-set
    trusted_ca:
      file: ca.pem
    app_id: com.example.ok
    mode: defense
    threat_events: true
    device_headers:
      eyeColour: X-Eye
    unknown_key: 1
`
	_, err := loadString(t, c.Dir, yaml)
	var le *fusion.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want *LoadError, got %v", err)
	}
	want := []string{
		":2: fusion_sets[0].id: invalid id",
		":4: fusion_sets[0].trusted_ca.file: file not found: ",
		":7: fusion_sets[0].threat_events: mode detection with threat_events false",
		":8: fusion_sets[0].max_chain_depth: wrong type",
		":9: fusion_sets[0].scores: scores have no effect without fail_safe",
		":10: fusion_sets[0].scores.NOT_A_REASON: unknown reason code",
		":18: fusion_sets[1].device_headers.eyeColour: unknown device key",
		":19: fusion_sets[1].unknown_key: unknown field",
	}
	if len(le.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(le.Problems), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(le.Problems[i].Error(), w) {
			t.Errorf("problem %d = %q, want it to contain %q", i, le.Problems[i].Error(), w)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want one per problem", len(lines))
	}
}

// TestCompileSetInline covers the entry point used for Caddyfile blocks:
// no file, no line, fields relative to the set.
func TestCompileSetInline(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	s, err := fusion.CompileSet(fusion.SetConfig{ID: "bank-prod", AppID: "com.example.bank", Mode: "defense",
		TrustedCA: fusion.CASource{PEM: string(c.CAPEM)}}, c.Dir, "Caddyfile")
	if err != nil || s.ID != "bank-prod" || len(s.CACerts) != 1 {
		t.Fatalf("inline set: %v %v", s, err)
	}
	_, err = fusion.CompileSet(fusion.SetConfig{ID: "bank-prod", Mode: "detection"}, c.Dir, "Caddyfile")
	var le *fusion.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want *LoadError, got %v", err)
	}
	got := err.Error()
	for _, w := range []string{"Caddyfile: app_id: required", "Caddyfile: threat_events: mode detection", "Caddyfile: trusted_ca: required"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

// writeOtherCRL writes other-crl.pem, a CRL signed by an unrelated CA.
func writeOtherCRL(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	writeCRL(t, filepath.Join(dir, "other-crl.pem"), ca, key, []*big.Int{big.NewInt(99)})
	return ca
}

func writeCRL(t *testing.T, path string, ca *x509.Certificate, key crypto.Signer, serials []*big.Int) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadKeepsGatewaySection: the gateway section belongs to package xds;
// fusion keeps it as a node with its line numbers and does not judge it.
func TestLoadKeepsGatewaySection(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	cfg, err := loadString(t, c.Dir, validSet+"gateway:\n  authz:\n    address: 127.0.0.1:18081\n  listeners: []\n")
	if err != nil {
		t.Fatalf("gateway section refused: %v", err)
	}
	gw := cfg.File.Gateway
	if gw == nil || gw.Kind != yaml.MappingNode || gw.Line != 9 || len(gw.Content) != 4 || gw.Content[0].Value != "authz" || gw.Content[0].Line != 9 {
		t.Fatalf("gateway node %+v", gw)
	}
	cfg, err = loadString(t, c.Dir, validSet)
	if err != nil || cfg.File.Gateway != nil {
		t.Fatalf("no gateway section: %v %v", cfg.File.Gateway, err)
	}
}
