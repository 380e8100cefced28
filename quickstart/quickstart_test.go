package quickstart

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mccgate/mcc/internal/testport"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/client"
	"github.com/mccgate/mcc/threat"
)

// TestQuickstartCurlLines starts the quickstart in-process on a free port,
// runs every curl line it prints with the real curl binary and checks that
// each behaves as its comment says, that the events file fills, and that
// cancelling the context frees the ports. It then starts it again in
// detection mode in the same directory: the demo PKI must be reused.
func TestQuickstartCurlLines(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("this test runs the printed curl lines and needs curl on PATH (apt-get install -y curl): %v", err)
	}
	isolateCaddyDirs(t)
	dir := filepath.Join(t.TempDir(), "qs dir") // a space, to check the quoting

	first := runQuickstart(t, curl, dir, "defense", true, nil)
	// The second run also follows the printed revocation hint (through
	// package pki, which `mcc revoke` calls): the running gateway must pick
	// up the new revocation list without a restart.
	second := runQuickstart(t, curl, dir, "detection", false, func(ins instructions) {
		revokeDemoCert(t, dir)
		waitForRevocation(t, curl, ins.cd, ins.tries[0])
	})

	if !bytes.Equal(first.appCert, second.appCert) {
		t.Errorf("the demo app certificate changed between runs; it must be kept")
	}
	if !bytes.Equal(first.serverCA, second.serverCA) {
		t.Errorf("the demo server CA changed between runs; it must be kept")
	}

	// The third start follows a revocation: line 1 promises HTTP 200 with
	// the app certificate, so the revoked one must have been replaced
	// (runQuickstart runs line 1 and checks the promise), and the output
	// must say so, and that the CA was kept.
	third := runQuickstart(t, curl, dir, "defense", false, func(instructions) {})
	if bytes.Equal(second.appCert, third.appCert) {
		t.Errorf("the revoked demo app certificate was kept; the next start must issue a new one")
	}
	if !strings.Contains(third.printed, "demo CA kept from an earlier run; the demo app certificate was revoked, so a new one was issued") {
		t.Errorf("the start after a revocation does not say the CA was kept and the certificate re-issued:\n%s", third.printed)
	}
	if !bytes.Equal(first.serverCA, third.serverCA) {
		t.Errorf("the demo server CA changed between runs; it must be kept")
	}
}

type runResult struct {
	appCert, serverCA []byte
	printed           string
}

// runQuickstart runs one quickstart in dir; freshDir says whether dir is
// new (the demo PKI must be created) or used before (it must be kept).
func runQuickstart(t *testing.T, curl, dir, mode string, freshDir bool, afterTries func(instructions)) runResult {
	t.Helper()
	port := freePort(t)
	listen := net.JoinHostPort("127.0.0.1", port)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := new(syncBuffer)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{Dir: dir, Listen: listen, Mode: mode, Out: out})
	}()

	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-errc:
			t.Fatalf("quickstart (%s) stopped before it was ready: %v\noutput:\n%s", mode, err, out)
		case <-deadline:
			t.Fatalf("quickstart (%s) did not print its instructions within 2 minutes; output:\n%s", mode, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	printed := out.String()
	t.Logf("quickstart %s printed:\n%s", mode, printed)
	wantPKI := "kept from an earlier run"
	if freshDir {
		wantPKI = "demo PKI created now"
	}
	if !strings.Contains(printed, wantPKI) {
		t.Errorf("the output does not say %q", wantPKI)
	}

	ins := parseInstructions(t, printed)
	if ins.cd != dir {
		t.Fatalf("printed cd %q, want %q", ins.cd, dir)
	}
	if len(ins.tries) != 6 {
		t.Fatalf("parsed %d curl lines, want 6 (bundle as PEM, bundle as P12, no certificate, other CA, install certificate from two devices)", len(ins.tries))
	}
	enrollPort := strconv.Itoa(mustAtoi(t, port) + 1)
	wantEnroll := "mcc enroll --server https://localhost:" + enrollPort + " --server-ca server-ca.pem --fusion-set quickstart --bundle app.p12 --password-file app.p12.password --out install"
	if !strings.Contains(printed, wantEnroll) {
		t.Fatalf("the output does not show the enroll line %q", wantEnroll)
	}
	wantURL := "https://localhost:" + port + "/"
	enrolled := false
	for _, try := range ins.tries {
		if !strings.Contains(try.line, wantURL) {
			t.Errorf("curl line %q does not use %s", try.line, wantURL)
		}
		if strings.Contains(try.line, "install/install.pem") && !enrolled {
			enrollDemo(t, dir, enrollPort)
			enrolled = true
		}
		runCurlLine(t, curl, ins.cd, try)
	}

	// Every failure printed above must have become an event in the file.
	var wantReasons []string
	for _, try := range ins.tries {
		if try.reason != "" && try.reason != "RATE_ANOMALY" { // a report, checked below
			wantReasons = append(wantReasons, try.reason)
		}
	}
	if len(wantReasons) == 0 {
		t.Fatalf("no printed line names a reason code; output:\n%s", printed)
	}
	waitForEvents(t, ins.events, mode, wantAction(mode), wantReasons)
	// One install certificate from two devices: clone detection reports
	// it (allowed in every mode).
	waitForEvents(t, ins.events, mode, "reported", []string{"RATE_ANOMALY"})
	if afterTries != nil {
		afterTries(ins)
	}

	upstream := regexp.MustCompile(`echo upstream on (\S+?)\.?\n`).FindStringSubmatch(printed)
	if upstream == nil {
		t.Fatalf("the output does not name the echo upstream's address")
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("quickstart (%s) returned %v after cancel; want a clean stop", mode, err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("quickstart (%s) did not stop within a minute of cancel", mode)
	}
	if !strings.HasSuffix(out.String(), "stopped.\n") {
		t.Errorf("output does not end with %q:\n%s", "stopped.", out)
	}
	assertPortFree(t, listen)
	assertPortFree(t, upstream[1])

	if !strings.Contains(printed, "mcc revoke --ca ca --cert app-cert.pem") {
		t.Errorf("the output does not show how to revoke the demo certificate")
	}
	appCert, err := os.ReadFile(filepath.Join(dir, "app-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serverCA, err := os.ReadFile(filepath.Join(dir, ServerCAFile))
	if err != nil {
		t.Fatal(err)
	}
	checkFilesNamed(t, dir, printed)
	return runResult{appCert: appCert, serverCA: serverCA, printed: printed}
}

// fileName is a file name the quickstart prints or writes into comments.
var fileName = regexp.MustCompile(`[A-Za-z0-9_./-]+\.(?:pem|p12|password|yaml|jsonl|log)\b`)

// checkFilesNamed checks that every file the printed text and the comments
// of the generated fusion set file name exists: relative names in dir (the
// printed lines run there after the printed cd), absolute ones as they are.
func checkFilesNamed(t *testing.T, dir, printed string) {
	t.Helper()
	fusionFile, err := os.ReadFile(filepath.Join(dir, FusionSetFile))
	if err != nil {
		t.Fatal(err)
	}
	var comments strings.Builder
	for _, line := range strings.Split(string(fusionFile), "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "#"); ok {
			comments.WriteString(c + "\n")
		}
	}
	for _, text := range []string{printed, comments.String()} {
		// Absolute names inside dir (which may hold a space) as relative.
		text = strings.ReplaceAll(text, dir+string(filepath.Separator), "")
		for _, name := range fileName.FindAllString(text, -1) {
			if strings.HasPrefix(name, "examples/") {
				continue // the format's documentation in the repository
			}
			p := name
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, name)
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("the quickstart names %s, which does not exist: %v", name, err)
			}
		}
	}
	if !strings.Contains(comments.String(), "mcc revoke --ca ca --cert app-cert.pem") {
		t.Errorf("the fusion set file's comments do not show the revoke line with the real flag and file:\n%s", comments.String())
	}
}

// try is one printed curl line and the expectation its comment states.
type try struct {
	comment string
	line    string
	status  int
	reason  string // reason code named in the comment, if any
	message string // block message quoted in the comment, if any
}

type instructions struct {
	cd     string
	tries  []try
	events string
}

var (
	tryComment  = regexp.MustCompile(`^  # \d+\. `)
	wantStatus  = regexp.MustCompile(`-> HTTP (\d{3})`)
	wantReason  = regexp.MustCompile(`\(reason ([A-Z_]+)\)`)
	wantMessage = regexp.MustCompile(`message: ("(?:[^"\\]|\\.)*")`)
	eventsLine  = regexp.MustCompile(`^  tail -f (.+)$`)
)

// parseInstructions reads the printed text the way a user would: the cd
// line, each numbered comment and the curl lines under it, the tail line.
func parseInstructions(t *testing.T, s string) instructions {
	t.Helper()
	var ins instructions
	var cur *try
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  cd "):
			ins.cd = shellUnquote(t, strings.TrimPrefix(line, "  cd "))
		case tryComment.MatchString(line):
			m := wantStatus.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("printed comment %q does not say which HTTP status to expect", line)
			}
			status, _ := strconv.Atoi(m[1])
			cur = &try{comment: line, status: status}
			if m := wantReason.FindStringSubmatch(line); m != nil {
				cur.reason = m[1]
			}
			if m := wantMessage.FindStringSubmatch(line); m != nil {
				msg, err := strconv.Unquote(m[1])
				if err != nil {
					t.Fatalf("printed message %s: %v", m[1], err)
				}
				cur.message = msg
			}
		case strings.HasPrefix(line, "  curl "):
			if cur == nil {
				t.Fatalf("curl line %q has no numbered comment above it", line)
			}
			tr := *cur
			tr.line = strings.TrimPrefix(line, "  ")
			ins.tries = append(ins.tries, tr)
		case eventsLine.MatchString(line):
			ins.events = shellUnquote(t, eventsLine.FindStringSubmatch(line)[1])
		}
	}
	if ins.cd == "" || ins.events == "" {
		t.Fatalf("the output lacks the cd line or the tail -f line:\n%s", s)
	}
	return ins
}

// runCurlLine runs a printed line through sh in the printed directory, with
// a write-out of the status appended, and checks it against its comment.
func runCurlLine(t *testing.T, curl, dir string, tr try) {
	t.Helper()
	status, body, err := curlLine(t, curl, dir, tr.line)
	if err != nil {
		t.Errorf("%s\n%s\nfailed: %v", tr.comment, tr.line, err)
		return
	}
	if status != tr.status {
		t.Errorf("%s\n%s\ngot HTTP %d, want %d; body:\n%s", tr.comment, tr.line, status, tr.status, body)
		return
	}
	switch {
	case tr.status == 200:
		var echo echoReply
		if err := json.Unmarshal([]byte(body), &echo); err != nil || echo.Upstream != "mcc quickstart echo" {
			t.Errorf("%s\n%s\nwant the echo upstream's JSON, got (%v):\n%s", tr.comment, tr.line, err, body)
			return
		}
		if tr.reason != "" && echo.Headers["Mcc-Reason-Code"] != tr.reason {
			t.Errorf("%s\n%s\nthe echo shows Mcc-Reason-Code %q, want %q; body:\n%s", tr.comment, tr.line, echo.Headers["Mcc-Reason-Code"], tr.reason, body)
		}
		if tr.reason != "" && len(echo.ThreatEvent) == 0 {
			t.Errorf("%s\n%s\nthe echo shows no decoded Mcc-Threat-Event; body:\n%s", tr.comment, tr.line, body)
		}
		if tr.reason == "" && len(echo.Headers) != 0 {
			t.Errorf("%s\n%s\nan allowed request reached the upstream with mcc headers %v", tr.comment, tr.line, echo.Headers)
		}
	default:
		if tr.message == "" {
			t.Errorf("%s: a blocked line must quote the message the user sees", tr.comment)
		} else if !strings.Contains(body, tr.message) {
			t.Errorf("%s\n%s\nbody does not contain the printed message %q:\n%s", tr.comment, tr.line, tr.message, body)
		}
	}
}

// revokeDemoCert does what the printed `mcc revoke --ca ca --cert
// app-cert.pem` does.
func revokeDemoCert(t *testing.T, dir string) {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "app-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertificatePEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Revoke(pki.RevokeRequest{Serial: cert.SerialNumber}); err != nil {
		t.Fatal(err)
	}
}

// waitForRevocation reruns the demo app's curl line until the gateway
// reports the certificate as revoked (the fusion set polls its files).
func waitForRevocation(t *testing.T, curl, dir string, allowed try) {
	t.Helper()
	revoked := allowed
	revoked.reason = string(threat.ReasonCertRevoked)
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body, err := curlLine(t, curl, dir, allowed.line)
		if err != nil {
			t.Fatalf("%s: %v", allowed.line, err)
		}
		var echo echoReply
		_ = json.Unmarshal([]byte(body), &echo)
		if status == 200 && echo.Headers["Mcc-Reason-Code"] == revoked.reason {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after revocation, %s still gives HTTP %d without %s:\n%s", allowed.line, status, revoked.reason, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// curlLine runs a printed line through sh in dir, with a write-out of the
// status appended, and returns the status and the body.
func curlLine(t *testing.T, curl, dir, line string) (status int, body string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const marker = "\nmcc-test-status="
	cmd := exec.CommandContext(ctx, "sh", "-c", line+` -sS --write-out '`+strings.ReplaceAll(marker, "\n", `\n`)+`%{http_code}'`)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(curl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	body, code, found := strings.Cut(stdout.String(), marker)
	if runErr != nil || !found {
		return 0, "", fmt.Errorf("%v\nstderr: %s\nstdout: %s", runErr, stderr.String(), stdout.String())
	}
	status, err = strconv.Atoi(code)
	if err != nil {
		return 0, "", fmt.Errorf("curl wrote status %q", code)
	}
	return status, body, nil
}

// waitForEvents polls the events file until it holds an event for every
// wanted reason code, each in the expected mode and action.
// wantAction is the action of a refusal's event in mode.
func wantAction(mode string) string {
	if mode == "detection" {
		return "reported"
	}
	return "blocked"
}

func waitForEvents(t *testing.T, path, mode, wantAction string, reasons []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen := map[string]bool{}
		data, err := os.ReadFile(path)
		if err == nil {
			for _, line := range bytes.Split(data, []byte("\n")) {
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				var ev map[string]any
				if err := json.Unmarshal(line, &ev); err != nil {
					t.Fatalf("events file %s holds a line that is not JSON (%v): %s", path, err, line)
				}
				if ev["mode"] == mode && ev["action"] == wantAction && ev["fusionSet"] == SetID {
					seen[fmt.Sprint(ev["reasonCode"])] = true
				}
			}
		}
		missing := []string{}
		for _, r := range reasons {
			if !seen[r] {
				missing = append(missing, r)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events file %s has no %s/%s event for %v after 30s (read error: %v); content:\n%s", path, mode, wantAction, missing, err, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func assertPortFree(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still in use after the quickstart stopped: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago, and whose
// next port was too: the quickstart's demo enrollment listener takes it.
func freePort(t *testing.T) string { return testport.Pair(t) }

// isolateCaddyDirs keeps in-process Caddy away from the user's config and
// data directories.
func isolateCaddyDirs(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
}

// shellUnquote undoes shellQuote by asking the shell.
func shellUnquote(t *testing.T, s string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", "printf %s "+s).Output()
	if err != nil {
		t.Fatalf("sh could not read %s: %v", s, err)
	}
	return string(out)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestOptionsRejectBadInput(t *testing.T) {
	for _, o := range []Options{
		{Mode: "block"},
		{Listen: "8443"},
		{Listen: "127.0.0.1:0"},
		{Listen: "127.0.0.1:http"},
		{Dir: "/tmp/a{b}"},
	} {
		o.Dir = cmp.Or(o.Dir, t.TempDir())
		// Cancelled: should the input be accepted after all, Run stops
		// right after starting and returns nil, which fails the test.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := Run(ctx, o)
		if err == nil {
			t.Errorf("Run(%+v) = nil, want an error", o)
			continue
		}
		if errors.Is(err, context.Canceled) {
			t.Errorf("Run(%+v) = %v, want an input error", o, err)
		}
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// enrollDemo does what the printed `mcc enroll` line does (cmd/mcc's
// enroll runs the same server/client calls; doctest runs the printed line
// itself): a device key, a CSR, an enrollment over mTLS with the demo
// bundle, install/install.pem and install/install.key.
func enrollDemo(t *testing.T, dir, port string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "app.p12"))
	if err != nil {
		t.Fatal(err)
	}
	password, err := os.ReadFile(filepath.Join(dir, "app.p12.password"))
	if err != nil {
		t.Fatal(err)
	}
	key, leaf, _, err := pki.DecodeBundle(data, string(password))
	if err != nil {
		t.Fatal(err)
	}
	bundle := tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	c, err := client.New(client.Options{Server: "https://localhost:" + port, CAFile: filepath.Join(dir, ServerCAFile), ClientCertificate: &bundle})
	if err != nil {
		t.Fatal(err)
	}
	devKey, csr, err := client.NewDeviceKey()
	if err != nil {
		t.Fatal(err)
	}
	// A new install id each time, as the printed line makes a new UUID: the
	// server binds an install id to its key, and the quickstart's data
	// directory (its database) outlives a run.
	got, err := c.Enroll(t.Context(), SetID, client.EnrollRequest{CSR: csr, InstallID: "quickstart-test-" + rand.Text()})
	if err != nil {
		t.Fatalf("enrolling with the demo bundle: %v", err)
	}
	cert, err := pki.ParseCertificatePEM([]byte(got.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, InstallDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := (&pki.ControlCert{Cert: cert, Key: devKey}).WriteFiles(filepath.Join(dir, InstallDir, "install.pem"), filepath.Join(dir, InstallDir, "install.key"), false); err != nil {
		t.Fatal(err)
	}
}
