package gateway_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/xds/gateway"
)

// The structural decode reads no file: with the listener's key absent and its
// certificate unreadable, the section still decodes and routes; only
// LoadMaterial (mcc xds) reports them.
func TestDecodeReadsNoKeyMaterial(t *testing.T) {
	dir := setup(t)
	if err := os.Remove(filepath.Join(dir, "edge-key.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "edge.pem"), 0); err != nil {
		t.Fatal(err)
	}
	g, err := decodeStructure(t, dir, goodSection)
	if err != nil {
		t.Fatalf("structural decode read the key material: %v", err)
	}
	l := g.Listener("edge")
	if l.KeyPEM != nil || l.CertPEM != nil {
		t.Fatal("Decode read certificate or key")
	}
	if set, ok := g.FusionSetForConnection(8443, "x.b.example.com"); !ok || set != "app-b" {
		t.Fatalf("route = %q, %v", set, ok)
	}
	err = g.LoadMaterial()
	var ge *gateway.Error
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "sets.yaml:9: gateway.listeners[0].certificate.key_file: file not found: "+filepath.Join(dir, "edge-key.pem")) {
		t.Fatalf("LoadMaterial err = %v", err)
	}
	if os.Getuid() != 0 && !strings.Contains(err.Error(), "sets.yaml:8: gateway.listeners[0].certificate.cert_file") {
		t.Fatalf("unreadable certificate not reported: %v", err)
	}
}
