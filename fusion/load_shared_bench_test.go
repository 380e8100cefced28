package fusion_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// sharedSetsFile writes a fusion set file of n sets that all trust the same
// CA and read the same revocation list (10,000 serials) and CRL (1,000
// entries), as a deployment with one set per app and one PKI does.
func sharedSetsFile(tb testing.TB, n int) string {
	tb.Helper()
	c := fusiontest.NewCorpus(tb, "bank-prod", "com.example.bank")
	var list strings.Builder
	for i := 0; i < 10_000; i++ {
		fmt.Fprintf(&list, "%x\n", 1_000_000+i)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "revoked.txt"), []byte(list.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	var entries []x509.RevocationListEntry
	for i := 0; i < 1000; i++ {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(int64(2_000_000 + i)), RevocationTime: c.Now.Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: c.Now.Add(-time.Hour), NextUpdate: c.Now.AddDate(0, 0, 7),
		RevokedCertificateEntries: entries,
	}, c.CACert, c.CAKey)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "crl.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	var f strings.Builder
	f.WriteString("fusion_sets:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&f, `  - id: app-%04d
    trusted_ca: {file: %q}
    app_id: com.example.app%d
    mode: defense
    threat_events: true
    revocation:
      files: [revoked.txt]
      crls: [crl.pem]
`, i, c.CAFile, i)
	}
	path := filepath.Join(c.Dir, "sets.yaml")
	if err := os.WriteFile(path, []byte(f.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkLoad1000SetsSharedFiles loads 1,000 sets that share their CA,
// revocation list and CRL files. "first" is a first load (each file read and
// parsed once for all 1,000 sets); "reload" a reload whose referenced files
// did not change (read, hashed, not parsed again).
func BenchmarkLoad1000SetsSharedFiles(b *testing.B) {
	path := sharedSetsFile(b, 1000)
	for _, bc := range []struct {
		name  string
		first bool
	}{{"first", true}, {"reload", false}} {
		b.Run(bc.name, func(b *testing.B) {
			if _, err := fusion.LoadFile(path); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if bc.first {
					fusion.ResetFileCache()
				}
				if _, err := fusion.LoadFile(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Sets sharing files share their parse, and a change to a shared file
// reaches every set on the next load.
func TestLoadSharedFilesParsedOncePerContent(t *testing.T) {
	path := sharedSetsFile(t, 3)
	cfg, err := fusion.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range cfg.IDs {
		if n := len(cfg.Sets[id].RevokedSerials()); n != 11_000 {
			t.Fatalf("set %s revokes %d serials, want 11000", id, n)
		}
	}
	a, b := cfg.Sets[cfg.IDs[0]], cfg.Sets[cfg.IDs[2]]
	if a.CACerts[0] != b.CACerts[0] {
		t.Error("the shared CA was parsed once per set")
	}
	// Same size, same mtime, other content: seen by its hash.
	list := filepath.Join(filepath.Dir(path), "revoked.txt")
	fi, err := os.Stat(list)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	data[0] = map[byte]byte{'f': 'e'}[data[0]] // "f4240" -> "e4240"
	if err := os.WriteFile(list, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(list, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	cfg, err = fusion.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range cfg.IDs {
		got := cfg.Sets[id].RevokedSerials()
		if !slices.Contains(got, "e4240") || slices.Contains(got, "f4240") {
			t.Fatalf("set %s still has the old list", id)
		}
	}
}
