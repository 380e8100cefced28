// Package clients_test runs the example clients the way an app runs: each
// is built with its own toolchain (go, javac, node, Debian's python3 with
// python3-cryptography) and called against a real gateway, the quickstart's
// Caddy with its demo bundle and its demo mcc server for enrollment.
package clients_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testport"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/quickstart"
)

// client is one example client and how to run it.
type client struct {
	name string
	argv []string
	// enrolls: the client trades the bundle for an install certificate
	// when MCC_ENROLL_URL is set.
	enrolls bool
}

// gateway is a running quickstart: Caddy on url, enrollment on enrollURL.
type gateway struct {
	dir, url, enrollURL string
}

// blockMessage is the quickstart set's message (quickstart/config.go).
const blockMessage = "This app could not be verified. Please install the official app (mcc quickstart)."

var blockedLine = regexp.MustCompile(`^blocked: (.+) \(reference: ([0-9a-f-]{8,})\)$`)

// TestClients: every example client is allowed with the bundle, blocked
// with the set's message and a reference without it (its device id
// reaching the event), fails in one line on a wrong password, and the
// clients that enroll do: enroll, keep and reuse the install certificate,
// keep it when the server says renewal is too early, and fall back to the
// bundle when enrollment is refused.
func TestClients(t *testing.T) {
	work := t.TempDir()
	clients := buildClients(t, work)
	gw := startQuickstart(t, filepath.Join(work, "qs"))
	enveloped := issueEnveloped(t, gw, work)
	bundleEnv := func(c client) []string {
		return []string{"MCC_URL=" + gw.url, "MCC_SERVER_CA=" + filepath.Join(gw.dir, "server-ca.pem"), "MCC_DEVICE_ID=" + c.name + "-renewing-device",
			"MCC_BUNDLE=" + filepath.Join(gw.dir, "app.p12"), "MCC_BUNDLE_PASSWORD_FILE=" + filepath.Join(gw.dir, "app.p12.password")}
	}

	// Enroll first at a server issuing 5-minute certificates, so the
	// renewals at the end come due while the rest runs.
	short := startShortLivedServer(t, gw)
	var renewals []*renewal
	for _, c := range clients {
		if c.enrolls {
			renewals = append(renewals, enrollShortLived(t, c, bundleEnv(c), short, work))
		}
	}

	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			device := c.name + "-device-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			env := []string{"MCC_URL=" + gw.url, "MCC_SERVER_CA=" + filepath.Join(gw.dir, "server-ca.pem"), "MCC_DEVICE_ID=" + device}
			bundle := []string{"MCC_BUNDLE=" + filepath.Join(gw.dir, "app.p12"), "MCC_BUNDLE_PASSWORD_FILE=" + filepath.Join(gw.dir, "app.p12.password")}

			code, out, errOut := run(t, c, append(env, bundle...))
			if code != 0 || !strings.HasPrefix(out, "allowed: HTTP 200: ") || !strings.Contains(out, "mcc quickstart echo") {
				t.Fatalf("with the bundle: exit %d\n%s%s", code, out, errOut)
			}

			code, out, errOut = run(t, c, env)
			m := blockedLine.FindStringSubmatch(strings.TrimSpace(out))
			if code != 3 || m == nil || m[1] != blockMessage {
				t.Fatalf("without the bundle: exit %d, want 3 and %q with a reference\n%s%s", code, "blocked: "+blockMessage, out, errOut)
			}
			ev := waitForEvent(t, gw, m[2])
			if ev["reasonCode"] != "NO_CLIENT_CERT" || ev["deviceID"] != device {
				t.Errorf("the event of the block: reason %v, deviceID %v; want NO_CLIENT_CERT and %s (the client's device header)", ev["reasonCode"], ev["deviceID"], device)
			}

			// The bundle an iOS or older Android app ships: 3DES PKCS#12 in
			// an AES-256-GCM envelope the client opens.
			code, out, errOut = run(t, c, append(env, "MCC_BUNDLE="+enveloped, "MCC_BUNDLE_PASSWORD_FILE="+pki.PasswordPath(enveloped)))
			if code != 0 || !strings.HasPrefix(out, "allowed: HTTP 200: ") {
				t.Fatalf("with the enveloped bundle: exit %d\n%s%s", code, out, errOut)
			}

			wrong := filepath.Join(work, c.name+"-wrong.password")
			if err := os.WriteFile(wrong, []byte("not the password\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut = run(t, c, append(env, "MCC_BUNDLE="+filepath.Join(gw.dir, "app.p12"), "MCC_BUNDLE_PASSWORD_FILE="+wrong))
			if code != 1 || out != "" || !strings.HasPrefix(errOut, "error: ") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("a wrong password: exit %d, want 1 and one error line\nstdout: %s\nstderr: %s", code, out, errOut)
			}

			code, out, errOut = run(t, c, append(env, "MCC_BUNDLE="+enveloped, "MCC_BUNDLE_PASSWORD_FILE="+wrong))
			if code != 1 || out != "" || !strings.Contains(errOut, "envelope does not open") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("a wrong password for the envelope: exit %d, want 1 and one line naming the envelope\nstdout: %s\nstderr: %s", code, out, errOut)
			}

			if c.enrolls {
				testEnrollment(t, c, gw, append(env, bundle...), filepath.Join(work, c.name+"-state"))
			}
			if c.name == "kotlin" {
				testKotlinCSR(t, c)
			}
		})
	}
	for _, r := range renewals {
		t.Run(r.c.name+"/renewal", func(t *testing.T) { testRenewal(t, r) })
	}
}

// testEnrollment runs an enrolling client three times against the
// quickstart's mcc server, then with a fusion set the server does not have.
func testEnrollment(t *testing.T, c client, gw gateway, env []string, state string) {
	env = append(env, "MCC_ENROLL_URL="+gw.enrollURL, "MCC_FUSION_SET="+quickstart.SetID, "MCC_STATE_DIR="+state)
	code, out, errOut := run(t, c, env)
	if code != 0 || !strings.Contains(out, "enrolled: install ") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("enrolling: exit %d\n%s%s", code, out, errOut)
	}
	answer := filepath.Join(state, "install.json")
	if fi, err := os.Stat(answer); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the install state: %v %v, want a 0600 file", fi, err)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the state directory: %v %v, want 0700", fi, err)
	}
	var kept struct {
		Key    string
		Answer struct{ Serial, Certificate, RenewAfter string }
	}
	readJSON(t, answer, &kept)
	if kept.Key == "" || kept.Answer.Serial == "" {
		t.Fatalf("the install state holds no key or certificate: %+v", kept.Answer)
	}

	// The next start reuses the kept certificate.
	code, out, errOut = run(t, c, env)
	if code != 0 || strings.Contains(out, "enrolled") || strings.Contains(out, "renew") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("the second start: exit %d, want the kept install certificate\n%s%s", code, out, errOut)
	}

	// A device clock ahead of the server's: renewAfter passed here, not
	// there. The server refuses as too early; the certificate is kept, and
	// so is the key made for the renewal (a retry sends the same key).
	var doc map[string]any
	readJSON(t, answer, &doc)
	doc["answer"].(map[string]any)["renewAfter"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	writeJSON(t, answer, doc)
	var pending []string
	for range 2 {
		code, out, errOut = run(t, c, env)
		if code != 0 || !strings.Contains(out, "renewal: too early") || !strings.Contains(out, "keeping serial "+kept.Answer.Serial) || !strings.Contains(out, "allowed: HTTP 200: ") {
			t.Fatalf("renewing too early: exit %d, want the certificate kept\n%s%s", code, out, errOut)
		}
		var st struct{ PendingKey any }
		readJSON(t, answer, &st)
		b, _ := json.Marshal(st.PendingKey)
		pending = append(pending, string(b))
	}
	if pending[0] == "null" || pending[0] != pending[1] {
		t.Errorf("the renewal key: %s then %s, want one key kept for the retry", pending[0], pending[1])
	}

	// Enrollment refused (no such fusion set at the server): the bundle.
	fresh := append(env[:len(env):len(env)], "MCC_FUSION_SET=no-such-set", "MCC_STATE_DIR="+state+"-refused")
	code, out, errOut = run(t, c, fresh)
	if code != 0 || !strings.Contains(out, "enrollment refused (HTTP 404)") || !strings.Contains(out, "using the bundle") || !strings.Contains(out, "allowed: HTTP 200: ") {
		t.Fatalf("a refused enrollment: exit %d, want the bundle used\n%s%s", code, out, errOut)
	}
}

// issueEnveloped issues a bundle of the quickstart's app with its demo CA
// in the ios profile (pki.FormatLegacyEnveloped), as `mcc issue --profile
// ios` does.
func issueEnveloped(t *testing.T, gw gateway, work string) string {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(gw.dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "ios.p12e")
	format, err := pki.PlatformFormat("ios")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(pki.IssueFilesOptions{
		Request: pki.IssueRequest{FusionSet: quickstart.SetID, AppID: quickstart.AppID, Build: certid.BuildInfo{ID: "ios-1", Date: time.Now()}, ValidFor: 24 * time.Hour},
		Out:     out, Format: format,
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// buildClients compiles what needs compiling, into work.
func buildClients(t *testing.T, work string) []client {
	t.Helper()
	goBin := filepath.Join(work, "goclient")
	mustRun(t, "go", "build", "-o", goBin, "./go")
	// org.json: the JSON Android ships, as Debian packages it; the Java
	// and Kotlin clients parse the server's answers with it.
	jsonJar := debianJar(t, "com.android.json.jar", "libandroid-json-java")
	javaOut := filepath.Join(work, "java")
	mustRun(t, lookPath(t, "javac", "default-jdk-headless"), "-cp", jsonJar, "-d", javaOut, "java/MccClient.java")
	// Kotlin/JVM with OkHttp, as Debian packages them (kotlin 1.3,
	// libokhttp-java 3.13): MccTls.kt and MccEnroll.kt are the code an
	// Android app shares.
	ktOut := filepath.Join(work, "kotlin")
	jars := []string{debianJar(t, "okhttp.jar", "libokhttp-java"), debianJar(t, "okio.jar", "libokio-java"), jsonJar}
	// android/MccInstall.kt is compiled with them, against a stub of the
	// Android API it calls, so the shared code cannot drift from it; it
	// is never run (testdata/androidstub/README.md).
	stubOut := filepath.Join(work, "androidstub")
	stubs, err := filepath.Glob("testdata/androidstub/android/*/*.java")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("testdata/androidstub/android/*/*/*.java")
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, lookPath(t, "javac", "default-jdk-headless"), append([]string{"-d", stubOut}, append(stubs, more...)...)...)
	mustRun(t, lookPath(t, "kotlinc", "kotlin"), "-nowarn", "-cp", strings.Join(append([]string{stubOut}, jars...), ":"), "-d", ktOut,
		"kotlin/MccTls.kt", "kotlin/MccCsr.kt", "kotlin/MccEnroll.kt", "kotlin/Main.kt", "android/MccInstall.kt")
	ktClasspath := strings.Join(append([]string{ktOut, debianJar(t, "kotlin-stdlib.jar", "kotlin")}, jars...), ":")
	return []client{
		{name: "go", argv: []string{goBin}, enrolls: true},
		{name: "kotlin", argv: []string{lookPath(t, "java", "default-jdk-headless"), "-cp", ktClasspath, "mcc.example.MainKt"}, enrolls: true},
		{name: "python", argv: []string{debianPython(t), "python/client.py"}, enrolls: true},
		{name: "node", argv: []string{lookPath(t, "node", "nodejs"), "node/client.mjs"}, enrolls: true},
		{name: "java", argv: []string{lookPath(t, "java", "default-jdk-headless"), "-cp", javaOut + ":" + jsonJar, "MccClient"}, enrolls: true},
	}
}

// debianPython is Debian's python3 with python3-cryptography: the one
// scripts/test.sh installs, whatever python3 comes first on PATH.
func debianPython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import cryptography").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import cryptography (apt-get install -y python3-cryptography): %v %s", py, err, out)
	}
	return py
}

// debianJar is a jar of a Debian Java package.
func debianJar(t *testing.T, name, pkg string) string {
	t.Helper()
	p := filepath.Join("/usr/share/java", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (apt-get install -y %s): %v", p, pkg, err)
	}
	return p
}

func lookPath(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (apt-get install -y %s): %v", name, pkg, err)
	}
	return p
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// run runs a client with only env (and PATH, HOME) in its environment.
func run(t *testing.T, c client, env []string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running the %s client: %v", c.name, err)
	}
	return code, o.String(), e.String()
}

// waitForEvent finds the event with this externalID in the quickstart's
// events file (the file sink writes asynchronously).
func waitForEvent(t *testing.T, gw gateway, externalID string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open(filepath.Join(gw.dir, quickstart.EventsFile))
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				var ev map[string]any
				if json.Unmarshal(sc.Bytes(), &ev) == nil && ev["externalID"] == externalID {
					f.Close()
					return ev
				}
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event with externalID %s in %s", externalID, quickstart.EventsFile)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startQuickstart runs the quickstart in this process until the test ends.
func startQuickstart(t *testing.T, dir string) gateway {
	t.Helper()
	home := t.TempDir() // keep in-process Caddy away from the user's directories
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	port := testport.Pair(t)

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := quickstart.Run(ctx, quickstart.Options{Dir: dir, Listen: "127.0.0.1:" + port, Mode: "defense", Out: pw})
		pw.CloseWithError(errors.Join(err, io.EOF))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stopping the quickstart: %v", err)
		}
	})
	// Read its instructions up to the last line, then drain the rest.
	ready := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop.") {
				ready <- lines
				_, _ = io.Copy(io.Discard, pr)
				return
			}
		}
		ready <- append(lines, "(the output ended)")
	}()
	select {
	case lines := <-ready:
		if !strings.Contains(lines[len(lines)-1], "Press Ctrl-C") {
			t.Fatalf("the quickstart stopped before it was ready:\n%s", strings.Join(lines, "\n"))
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the quickstart was not ready within 2 minutes")
	}
	p, _ := strconv.Atoi(port)
	return gateway{dir: dir, url: "https://localhost:" + port + "/", enrollURL: "https://localhost:" + strconv.Itoa(p+1)}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testKotlinCSR: the CSR MccCsr writes by hand (the code an Android app
// signs with its Keystore key) parses with Go's x509, the server's parser,
// verifies, and holds a P-256 key and nothing else; the enrollment steps
// then send it to the server.
func testKotlinCSR(t *testing.T, c client) {
	t.Helper()
	csrClient := client{name: c.name, argv: append(append([]string(nil), c.argv...), "csr")}
	code, out, errOut := run(t, csrClient, nil)
	if code != 0 {
		t.Fatalf("kotlin csr: exit %d\n%s%s", code, out, errOut)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("kotlin csr: not base64: %v\n%s", err, out)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("kotlin csr: Go does not parse it: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("kotlin csr: the signature does not verify: %v", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || len(csr.Subject.Names) != 0 || len(csr.Extensions) != 0 {
		t.Fatalf("kotlin csr: key %T, subject %q, %d extensions; want P-256, an empty subject, none", csr.PublicKey, csr.Subject, len(csr.Extensions))
	}
}
