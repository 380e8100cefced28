package pki

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

func newTestCA(t *testing.T, opts CAOptions) *CA {
	t.Helper()
	ca, err := InitCA(filepath.Join(t.TempDir(), "ca"), opts)
	if err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return ca
}

func testBuild() certid.BuildInfo {
	return certid.BuildInfo{
		ID:   "build-4711",
		Date: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC),
		User: "ci-runner",
		Host: "builder-7.example.internal",
		SDK:  "android-35",
	}
}

func testRequest() IssueRequest {
	return IssueRequest{FusionSet: "bank-prod", AppID: "com.example.bank", Build: testBuild()}
}

// openssl runs the real openssl binary; the tests need it (no skipping).
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl binary not found (install it: apt-get install -y openssl): %v", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", filepath.Base(path), got, want)
	}
}
