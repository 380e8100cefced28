package quickstart

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/mccgate/mcc/threat"
)

// printInstructions tells the user what is running and prints the curl
// lines to try, each after a comment that says what it shows. The lines use
// file names relative to the quickstart directory, after a `cd` line.
//
// Tests parse this output: a try is a "  # N. ..." line followed by one or
// more "  curl ..." lines; the comment's expectation is written as
// "-> HTTP <status>" and the block message is quoted after "message:".
func printInstructions(w io.Writer, g *gateway) {
	c, d := g.cfg, g.demo
	url := "https://localhost:" + c.Port + "/"
	rel := func(p string) string {
		if r, err := filepath.Rel(g.opts.Dir, p); err == nil && !strings.HasPrefix(r, "..") {
			return shellQuote(r)
		}
		return shellQuote(p)
	}
	cacert := "--cacert " + rel(filepath.Join(g.opts.Dir, ServerCAFile))

	fmt.Fprintf(w, "mcc quickstart: Caddy with fusion set %q (mode %s, threat events on)\n", c.SetID, c.Mode)
	fmt.Fprintf(w, "listening on %s (bound to %s), in front of a demo echo upstream on %s.\n\n", url, bindDescription(c.BindHost), c.Upstream)

	fmt.Fprintf(w, "Files in %s (%s):\n", g.opts.Dir, pkiState(g))
	fmt.Fprintf(w, "  %-26s the running configuration; %s is the fusion set\n", CaddyfileFile, FusionSetFile)
	fmt.Fprintf(w, "  %-26s the demo app's PKCS#12 bundle and its password file\n", rel(d.Bundle)+" (+ .password)")
	fmt.Fprintf(w, "  %-26s the same certificate and key as PEM, for curl\n", rel(d.Cert)+", "+rel(d.Key))
	fmt.Fprintf(w, "  %-26s a certificate and key from another CA, which the fusion set does not trust\n", rel(d.OtherCert)+", "+rel(d.OtherKey))
	fmt.Fprintf(w, "  %-26s the demo client CA (for mcc issue --ca / mcc revoke --ca)\n", rel(d.CADir)+"/")
	fmt.Fprintf(w, "  %-26s the demo server CA that signed the gateway's localhost certificate\n", ServerCAFile)
	fmt.Fprintf(w, "  %-26s the demo mcc server's database (the demo CA imported, for enrollment)\n", ServerDataDir+"/")
	fmt.Fprintf(w, "  %-26s Caddy's log\n\n", CaddyLogFile)

	fmt.Fprintf(w, "Try it from that directory:\n\n")
	fmt.Fprintf(w, "  cd %s\n\n", shellQuote(g.opts.Dir))

	fmt.Fprintf(w, "  # 1. With the demo app's certificate: allowed -> HTTP 200, the echo upstream answers with the request it got\n")
	fmt.Fprintf(w, "  curl %s --cert %s --key %s %s\n", cacert, rel(d.Cert), rel(d.Key), url)
	fmt.Fprintf(w, "  #    the same with the PKCS#12 bundle (curl built with OpenSSL):\n")
	fmt.Fprintf(w, "  curl %s --cert-type P12 --cert %s:\"$(cat %s)\" %s\n\n", cacert, rel(d.Bundle), rel(d.BundlePassword), url)

	if c.Mode == "defense" {
		fmt.Fprintf(w, "  # 2. Without a certificate: blocked -> HTTP 403 (reason %s), message: %q\n", threat.ReasonNoClientCert, blockMessage)
		fmt.Fprintf(w, "  curl %s %s\n\n", cacert, url)
		fmt.Fprintf(w, "  # 3. With a certificate from another CA: blocked -> HTTP 403 (reason %s), message: %q\n", threat.ReasonCertUntrusted, blockMessage)
		fmt.Fprintf(w, "  curl %s --cert %s --key %s %s\n\n", cacert, rel(d.OtherCert), rel(d.OtherKey), url)
		fmt.Fprintf(w, "  Add -H 'Accept: application/json' to get the block as JSON (error, message, reasonCode, externalID).\n\n")
	} else {
		fmt.Fprintf(w, "  # 2. Without a certificate: reported, not blocked -> HTTP 200 (reason %s), the echo shows the Mcc-Threat-Event header\n", threat.ReasonNoClientCert)
		fmt.Fprintf(w, "  curl %s %s\n\n", cacert, url)
		fmt.Fprintf(w, "  # 3. With a certificate from another CA: reported, not blocked -> HTTP 200 (reason %s), the echo shows the event\n", threat.ReasonCertUntrusted)
		fmt.Fprintf(w, "  curl %s --cert %s --key %s %s\n\n", cacert, rel(d.OtherCert), rel(d.OtherKey), url)
	}

	// mcc lines started by `go -C <repository> run` run in the repository:
	// their files are named by absolute paths.
	mccPath := rel
	if g.opts.MccAbsPaths {
		mccPath = shellQuote
	}
	enrollURL := "https://localhost:" + g.enrollPort
	inst := func(f string) string { return rel(filepath.Join(g.opts.Dir, InstallDir, f)) }
	installCert := "--cert " + inst("install.pem") + " --key " + inst("install.key")
	fmt.Fprintf(w, "Install certificates: the bundle as a bootstrap only. A demo mcc server in this process serves\n")
	fmt.Fprintf(w, "enrollment on %s: the app makes a key on the device and trades its bundle for a short-lived\n", enrollURL)
	fmt.Fprintf(w, "certificate for that key, naming the install.\n\n")
	fmt.Fprintf(w, "  # Play the app (a P-256 key, a CSR, mTLS with the bundle): enroll, writing %s and %s\n", inst("install.pem"), inst("install.key"))
	fmt.Fprintf(w, "  %s enroll --server %s --server-ca %s --fusion-set %s --bundle %s --password-file %s --out %s\n\n",
		g.opts.Mcc, enrollURL, mccPath(filepath.Join(g.opts.Dir, ServerCAFile)), c.SetID, mccPath(d.Bundle), mccPath(d.BundlePassword), mccPath(filepath.Join(g.opts.Dir, InstallDir)))
	fmt.Fprintf(w, "  # 4. With the install certificate, from one device: allowed -> HTTP 200\n")
	fmt.Fprintf(w, "  curl %s %s -H 'X-Device-Id: phone-1' %s\n\n", cacert, installCert, url)
	fmt.Fprintf(w, "  # 5. The same install certificate from a second device, as a copy of it would be used: reported, allowed in every mode -> HTTP 200 (reason %s), the echo shows the event (clone detection: more devices than clone_detection.max_devices allows)\n", threat.ReasonRateAnomaly)
	fmt.Fprintf(w, "  curl %s %s -H 'X-Device-Id: phone-2' %s\n\n", cacert, installCert, url)

	fmt.Fprintf(w, "Threat events (one JSON object per line) go to %s:\n\n", c.EventsFile)
	fmt.Fprintf(w, "  tail -f %s\n\n", shellQuote(c.EventsFile))
	outcome := "blocked"
	if c.Mode == "detection" {
		outcome = "reported"
	}
	fmt.Fprintf(w, "Revoke the demo app's certificate, then try line 1 again: the fusion set re-reads %s within\n", rel(c.Revoked))
	fmt.Fprintf(w, "seconds, and the line is %s with reason %s. The next start of the quickstart issues a new one.\n\n", outcome, threat.ReasonCertRevoked)
	fmt.Fprintf(w, "  %s revoke --ca %s --cert %s\n\n", g.opts.Mcc, mccPath(d.CADir), mccPath(d.Cert))
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}

// pkiState says what this run did with the demo PKI: created it, or kept
// the CA (and what, if anything, it issued anew).
func pkiState(g *gateway) string {
	switch {
	case g.state.caCreated:
		return "demo PKI created now, kept for later runs"
	case g.state.reissued:
		return "demo CA kept from an earlier run; the demo app certificate was revoked, so a new one was issued"
	case g.demo.Created:
		return "demo CA kept from an earlier run; expiring or missing demo certificates issued anew"
	default:
		return "demo CA and certificates kept from an earlier run"
	}
}

func bindDescription(host string) string {
	if host == "" {
		return "every interface"
	}
	return host
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+@%,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
