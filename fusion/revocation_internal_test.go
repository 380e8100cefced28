package fusion

import (
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSerialForms(t *testing.T) {
	want := string([]byte{0x1f, 0x2e, 0x3d})
	for _, in := range []string{"1f2e3d", "1F2E3D", "1f:2e:3d", "0x1f2e3d", "001f2e3d", " 1f 2e 3d ", "0X1F:2E:3D"} {
		b, err := parseSerial(in)
		if err != nil || string(b) != want {
			t.Errorf("parseSerial(%q) = %x, %v", in, b, err)
		}
	}
	for _, in := range []string{"", "xyz", "0x", strings.Repeat("ab", 65)} {
		if _, err := parseSerial(in); err == nil {
			t.Errorf("parseSerial(%q) accepted", in)
		}
	}
	if got := serialHex([]byte{0x00, 0x0a, 0xbc}); got != "abc" {
		t.Errorf("serialHex = %q", got)
	}
}

func TestRevocationListFile(t *testing.T) {
	fp := sha256.Sum256([]byte("cert"))
	path := filepath.Join(t.TempDir(), "revoked.txt")
	content := "# mcc revocation list\n\n0A:0B # revoked 2026-11-28 key compromise\nsha256:" +
		strings.ToUpper(hexString(fp[:])) + "\n   ff   \n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	src := revocationSource{files: []string{path}, fileFields: []string{"revocation.files[0]"}}
	rs, errs := src.loadWith(1, newLoadFiles())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	other := sha256.Sum256([]byte("other"))
	for _, tc := range []struct {
		serial     []byte
		fp         [32]byte
		bySN, byFP bool
	}{
		{[]byte{0x0a, 0x0b}, other, true, false},
		{[]byte{0xff}, other, true, false},
		{[]byte{0x0b}, fp, false, true},
		{[]byte{0x0b}, other, false, false},
	} {
		bySN, byFP := rs.revoked(tc.serial, &tc.fp)
		if bySN != tc.bySN || byFP != tc.byFP {
			t.Errorf("revoked(%x) = %v %v, want %v %v", tc.serial, bySN, byFP, tc.bySN, tc.byFP)
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// BenchmarkRevocationLookup1M looks serials up among 1,000,000 revoked ones
// (half hits, half misses), as checkCert does.
func BenchmarkRevocationLookup1M(b *testing.B) {
	const n = 1_000_000
	rs := &revocationSet{serials: make(map[string]struct{}, n), fingerprints: map[[32]byte]struct{}{}}
	serial := func(i uint64) []byte {
		var s [16]byte
		binary.BigEndian.PutUint64(s[:8], i*0x9e3779b97f4a7c15|1<<63)
		binary.BigEndian.PutUint64(s[8:], i)
		return s[:]
	}
	for i := uint64(0); i < n; i++ {
		rs.serials[string(serial(i))] = struct{}{}
	}
	probes := make([][]byte, 1<<16)
	for i := range probes {
		probes[i] = serial(uint64(i * 1999)) // revoked
		if i%2 == 1 {
			probes[i] = serial(uint64(n + i)) // not revoked
		}
	}
	var fp [32]byte
	b.ReportAllocs()
	b.ResetTimer()
	hits := 0
	for i := 0; i < b.N; i++ {
		if sn, _ := rs.revoked(probes[i&(1<<16-1)], &fp); sn {
			hits++
		}
	}
	if b.N >= 1<<16 && hits == 0 {
		b.Fatal("no hits")
	}
}
