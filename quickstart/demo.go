package quickstart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mccgate/mcc/pki"
)

// demoState is what prepare found and did with the demo PKI, so the
// printed text can say it truthfully.
type demoState struct {
	// caCreated: the trusted demo CA was created by this run (else kept).
	caCreated bool
	// reissued: the demo app certificate was found revoked (the printed
	// `mcc revoke` line of an earlier run) and a new one was issued.
	reissued bool
}

// ensureDemo creates or reuses the demo PKI. A demo app certificate that an
// earlier run's printed `mcc revoke` line revoked is replaced, so that the
// first printed curl line keeps its promise (allowed -> 200).
func ensureDemo(dir string) (*pki.Demo, demoState, error) {
	var st demoState
	_, err := os.Stat(filepath.Join(dir, "ca", pki.CACertFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.caCreated = true
	case err != nil:
		return nil, st, fmt.Errorf("demo PKI: %w", err)
	}
	demo, err := pki.EnsureDemo(dir, SetID, AppID)
	if err != nil {
		return nil, st, err
	}
	revoked, err := demoCertRevoked(demo)
	if err != nil {
		return nil, st, err
	}
	if !revoked {
		return demo, st, nil
	}
	// EnsureDemo re-issues the bundle, its password, its record and the
	// PEM pair when the certificate is missing.
	if err := os.Remove(demo.Cert); err != nil {
		return nil, st, fmt.Errorf("demo PKI: replacing the revoked demo certificate: %w", err)
	}
	if demo, err = pki.EnsureDemo(dir, SetID, AppID); err != nil {
		return nil, st, err
	}
	st.reissued = true
	return demo, st, nil
}

// demoCertRevoked reports whether the demo CA's revocation list (the file
// the quickstart's fusion set reads) lists the demo app certificate, by
// serial number or SHA-256 fingerprint.
func demoCertRevoked(d *pki.Demo) (bool, error) {
	certPEM, err := os.ReadFile(d.Cert)
	if err != nil {
		return false, fmt.Errorf("demo PKI: %w", err)
	}
	cert, err := pki.ParseCertificatePEM(certPEM)
	if err != nil {
		return false, fmt.Errorf("demo PKI: %s: %w", d.Cert, err)
	}
	list, err := os.ReadFile(filepath.Join(d.CADir, pki.RevokedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("demo PKI: %w", err)
	}
	fingerprint := pki.Fingerprint(cert.Raw)
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if fp, ok := strings.CutPrefix(strings.ToLower(line), "sha256:"); ok {
			if strings.ReplaceAll(fp, ":", "") == fingerprint {
				return true, nil
			}
			continue
		}
		if n, err := pki.ParseSerial(line); err == nil && n.Cmp(cert.SerialNumber) == 0 {
			return true, nil
		}
	}
	return false, sc.Err()
}
