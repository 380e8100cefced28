package clients_test

import (
	"bufio"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/x509"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/mccgate/mcc/internal/testpki"
	"github.com/mccgate/mcc/pki"
)

// profiles are the matrix's columns: the two bundles mcc writes, and the
// RC2 bundle of older tools (`openssl pkcs12 -export -legacy`), which shows
// why mcc's legacy bundle is 3DES.
var profiles = []string{"modern", "legacy", "rc2"}

// importer opens one bundle file with its password file; nil means the
// key and certificate came out.
type importer struct {
	row  string // the row's first cell in README.md's matrix
	open func(t *testing.T, bundle, password string) error
}

// TestBundleMatrix measures which bundle profile opens in which importer
// on this machine, and holds README.md's matrix to it: every row marked
// "measured" must say what was measured here, cell by cell.
func TestBundleMatrix(t *testing.T) {
	dir := t.TempDir()
	files := bundles(t, dir)
	py := debianPython(t)
	node := lookPath(t, "node", "nodejs")
	java := lookPath(t, "java", "default-jdk-headless")
	openssl := lookPath(t, "openssl", "openssl")
	command := func(name string, args ...string) func(t *testing.T, bundle, password string) error {
		return func(t *testing.T, bundle, password string) error {
			out, err := exec.Command(name, append(args, bundle, password)...).CombinedOutput()
			if err != nil {
				t.Logf("%s on %s: %v %s", filepath.Base(name), filepath.Base(bundle), err, firstLine(out))
			}
			return err
		}
	}
	importers := []importer{
		{"Go, go-pkcs12 `DecodeChain`", func(t *testing.T, bundle, password string) error {
			data, err := os.ReadFile(bundle)
			if err != nil {
				t.Fatal(err)
			}
			pw, err := os.ReadFile(password)
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = pkcs12.DecodeChain(data, string(pw))
			return err
		}},
		{"OpenSSL 3 (`openssl pkcs12`, no `-legacy`)", func(t *testing.T, bundle, password string) error {
			return command(openssl, "pkcs12", "-nodes", "-out", os.DevNull, "-in")(t, bundle, "-passin=file:"+password)
		}},
		{"Node.js (`tls` `pfx` and `passphrase`, OpenSSL 3)", command(node, "-e",
			`const fs = require("fs"); require("tls").createSecureContext({pfx: fs.readFileSync(process.argv[1]), passphrase: fs.readFileSync(process.argv[2], "utf8")})`)},
		{"Java 17 (`KeyStore` PKCS12, the `KeyManagerFactory` path)", command(java, "testdata/OpenBundle.java")},
		{"Python `cryptography` (`pkcs12.load_key_and_certificates`)", command(py, "-c",
			`import sys; from cryptography.hazmat.primitives.serialization import pkcs12; pkcs12.load_key_and_certificates(open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read())`)},
	}

	readme := readmeMatrix(t)
	for _, imp := range importers {
		var got []string
		for _, p := range profiles {
			cell := "opens"
			if imp.open(t, files[p], pki.PasswordPath(files[p])) != nil {
				cell = "refused"
			}
			got = append(got, cell)
		}
		t.Logf("%s: %s", imp.row, strings.Join(got, ", "))
		want, ok := readme[imp.row]
		if !ok {
			t.Errorf("README.md's matrix has no measured row %q", imp.row)
			continue
		}
		for i, p := range profiles {
			if !strings.HasPrefix(want[i], got[i]) {
				t.Errorf("%s, %s bundle: README.md says %q, measured %s", imp.row, p, want[i], got[i])
			}
		}
		delete(readme, imp.row)
	}
	for row := range readme {
		t.Errorf("README.md's matrix marks %q measured, but no test measures it", row)
	}
}

// bundles writes one bundle per profile, each with its password file.
func bundles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ca := testpki.NewCA(t, "matrix CA")
	files := map[string]string{"modern": filepath.Join(dir, "modern.p12"), "legacy": filepath.Join(dir, "legacy.p12"), "rc2": filepath.Join(dir, "rc2.p12")}
	res, err := ca.IssueFiles(pki.IssueFilesOptions{
		Request: pki.IssueRequest{FusionSet: "matrix", AppID: "com.example.matrix", Build: testpki.Build(), ValidFor: time.Hour},
		Out:     files["modern"], LegacyOut: files["legacy"],
	})
	if err != nil {
		t.Fatal(err)
	}
	// The RC2 bundle, as OpenSSL 1.x and older tools wrote them.
	keyDER, err := x509.MarshalPKCS8PrivateKey(res.Issued.Key)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(dir, "leaf.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: res.Issued.Cert.Raw}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(pemFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pki.PasswordPath(files["rc2"]), []byte("rc2-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "openssl", "pkcs12", "-export", "-legacy", "-in", pemFile, "-out", files["rc2"], "-passout", "file:"+pki.PasswordPath(files["rc2"]))
	return files
}

// readmeMatrix reads the rows of README.md's compatibility matrix that
// are marked measured: the first cell, then one cell per profile.
func readmeMatrix(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != len(profiles)+2 || cells[len(cells)-1] != "measured" {
			continue
		}
		rows[cells[0]] = cells[1 : 1+len(profiles)]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}
