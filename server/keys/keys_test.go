package keys_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/mccgate/mcc/server/keys"
)

func TestKeysSealOpen(t *testing.T) {
	s, err := keys.LoadOrCreate(filepath.Join(t.TempDir(), "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("-----BEGIN PRIVATE KEY----- not really")
	aad := []byte("mcc-ca-key/v1:bank-prod")
	a, err := s.Seal(secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Seal(secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same value are equal: the nonce is not random")
	}
	if bytes.Contains(a, secret) {
		t.Fatal("the sealed value holds the plaintext")
	}
	got, err := s.Open(a, aad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// The additional data binds the use: set A's key is not set B's.
	if _, err := s.Open(a, []byte("mcc-ca-key/v1:bank-test")); err == nil {
		t.Fatal("opened with another aad")
	}
	for i := range a {
		changed := bytes.Clone(a)
		changed[i] ^= 1
		if _, err := s.Open(changed, aad); err == nil {
			t.Fatalf("opened a value with byte %d changed", i)
		}
	}
	if _, err := s.Open(a[:10], aad); err == nil {
		t.Fatal("opened a cut value")
	}
	if _, err := s.Seal(secret, nil); err == nil {
		t.Fatal("sealed without additional data")
	}
}

func TestKeysWrongKEK(t *testing.T) {
	dir := t.TempDir()
	s1, err := keys.LoadOrCreate(filepath.Join(dir, "a.key"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := keys.LoadOrCreate(filepath.Join(dir, "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	if s1.ID() == s2.ID() {
		t.Fatal("two new KEKs have the same id")
	}
	sealed, err := s1.Seal([]byte("x"), []byte("use"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Open(sealed, []byte("use"))
	if !errors.Is(err, keys.ErrWrongKEK) || !strings.Contains(err.Error(), s1.ID()) {
		t.Fatalf("Open with another KEK = %v, want ErrWrongKEK naming %s", err, s1.ID())
	}
}

func TestKeysFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "kek.key")
	if _, err := keys.Load(path); err == nil {
		t.Fatal("Load created a missing KEK")
	}
	s, err := keys.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("KEK file mode %04o, want 0600", fi.Mode().Perm())
	}
	if fi.Size() != keys.KEKSize {
		t.Fatalf("KEK file size %d", fi.Size())
	}
	again, err := keys.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := s.Seal([]byte("v"), []byte("u"))
	if _, err := again.Open(sealed, []byte("u")); err != nil {
		t.Fatalf("the KEK changed on the second LoadOrCreate: %v", err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := keys.Load(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("a group-readable KEK was loaded: %v", err)
		}
		if _, err := keys.LoadOrCreate(path); err == nil {
			t.Fatal("LoadOrCreate replaced or accepted a group-readable KEK")
		}
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.LoadOrCreate(short); err == nil {
		t.Fatal("a 10-byte KEK was accepted")
	}
	if _, err := keys.Load(dir); err == nil {
		t.Fatal("a directory was loaded as a KEK")
	}
}

// Several instances starting at once on one fresh KEK path end with one
// key, never a half-written one.
func TestKeysConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek.key")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := keys.LoadOrCreate(path)
			errs[i] = err
			if err == nil {
				ids[i] = s.ID()
			}
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("instance %d loaded KEK %s, instance 0 %s", i, ids[i], ids[0])
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
