package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/client"
)

// TestCIExampleScript runs examples/ci/issue-build.sh as written, with the
// real mcc binary, against a real server: the files a pipeline gets, a
// record that verifies, the certificate listed by the API, and a retried
// job that gets the same build.
func TestCIExampleScript(t *testing.T) {
	e := startRemoteServer(t)
	bin := filepath.Join(t.TempDir(), "mcc")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script, err := filepath.Abs("../../examples/ci/issue-build.sh")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	runScript := func(outDir string) string {
		t.Helper()
		cmd := exec.Command("bash", script)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "MCC="+bin, "MCC_SERVER_URL="+e.url, "MCC_TOKEN_FILE="+e.ciToken,
			"MCC_FUSION_SET=bank-prod", "MCC_APP_ID=com.example.bank", "MCC_BUILD_ID=gh-4711", "MCC_OUT_DIR="+outDir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("issue-build.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	out := runScript("build/mcc")
	if !strings.Contains(out, "OK build/mcc/client.p12: SHA-256 matches") {
		t.Errorf("the script did not verify the bundle:\n%s", out)
	}
	dir := filepath.Join(work, "build", "mcc")
	for name, mode := range map[string]os.FileMode{"client.p12": 0o600, "client.p12.password": 0o600, "client.p12.certified.json": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		// The script's umask 077 makes even the public record private.
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", name, fi.Mode().Perm(), mode)
		}
	}
	rec, err := pki.ReadRecordFile(filepath.Join(dir, "client.p12.certified.json"), mustCACert(t, e.caCert(t)), &pki.BundleToVerify{
		Data: pkiReadFile(t, filepath.Join(dir, "client.p12")), Password: pkiBundlePassword(t, filepath.Join(dir, "client.p12")),
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.client(t, e.ciToken).Certificate(context.Background(), rec.Certificate.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.BuildID != "gh-4711" || got.FusionSet != "bank-prod" || got.Status != "valid" {
		t.Errorf("the API lists %+v", got)
	}
	// A re-run of the job: the same certificate, no second one.
	runScript("retry")
	if string(pkiReadFile(t, filepath.Join(work, "retry", "client.p12"))) != string(pkiReadFile(t, filepath.Join(dir, "client.p12"))) {
		t.Error("a re-run got another bundle")
	}
	page, err := e.client(t, e.ciToken).Certificates(context.Background(), client.CertificateFilter{BuildID: "gh-4711"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 {
		t.Errorf("%d certificates for the build after a re-run, want 1", len(page.Items))
	}
}
