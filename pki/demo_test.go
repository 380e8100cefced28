package pki

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureDemoCreatesOnceAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	d, err := EnsureDemo(dir, "demo", "com.example.demo")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Created {
		t.Error("first run did not report creation")
	}
	for _, p := range []string{filepath.Join(d.CADir, CAKeyFile), d.Bundle, d.BundlePassword, d.Cert, d.Key, filepath.Join(d.OtherCADir, CAKeyFile), d.OtherCert, d.OtherKey} {
		assertMode(t, p, 0o600)
	}
	ca, err := LoadCA(d.CADir)
	if err != nil {
		t.Fatal(err)
	}
	good, err := tls.LoadX509KeyPair(d.Cert, d.Key)
	if err != nil {
		t.Fatalf("curl pair does not load: %v", err)
	}
	other, err := tls.LoadX509KeyPair(d.OtherCert, d.OtherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Leaf.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("app cert not from the demo CA: %v", err)
	}
	if err := other.Leaf.CheckSignatureFrom(ca.Cert); err == nil {
		t.Error("the untrusted client cert is signed by the trusted CA")
	}
	if other.Leaf.URIs[0].String() != good.Leaf.URIs[0].String() {
		t.Error("untrusted cert should carry the same identity")
	}
	rec, _ := os.ReadFile(d.Record)
	if _, err := VerifyRecord(rec, ca.Cert, nil); err != nil {
		t.Errorf("demo record: %v", err)
	}
	before, _ := os.ReadFile(d.Bundle)

	d2, err := EnsureDemo(dir, "demo", "com.example.demo")
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(d2.Bundle)
	if d2.Created || string(before) != string(after) {
		t.Error("second run re-created the demo PKI")
	}

	// Another app id re-issues the app certificate under the same CA.
	d3, err := EnsureDemo(dir, "demo", "com.example.other")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := tls.LoadX509KeyPair(d3.Cert, d3.Key)
	if !d3.Created || again.Leaf.URIs[0].String() != "mcc://demo/com.example.other" || again.Leaf.CheckSignatureFrom(ca.Cert) != nil {
		t.Error("app id change did not re-issue under the same CA")
	}
	if _, err := EnsureDemo(dir, "Bad Set", "x"); err == nil {
		t.Error("bad set id accepted")
	}
}
