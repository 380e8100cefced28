package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mccgate/mcc/pki/certid"
)

// Demo is the demo PKI of `mcc quickstart`: paths only.
//
// Private files (0600): CADir/ca-key.pem, Bundle, BundlePassword, Cert, Key,
// OtherCADir/ca-key.pem, OtherCert, OtherKey. Public: CACert, Record,
// OtherCACert, revocation files.
type Demo struct {
	Dir       string
	FusionSet string
	AppID     string

	CADir  string // the trusted demo CA directory (mcc ca init layout)
	CACert string // trusted_ca for the fusion set

	Bundle         string // app.p12 (Modern2023)
	BundlePassword string // app.p12.password
	Record         string // app.p12.certified.json
	Cert           string // app-cert.pem: leaf then CA, for curl --cert
	Key            string // app-key.pem, for curl --key

	// A second CA the fusion set does not trust, and a client certificate
	// from it with the same identity: it must be refused (CERT_UNTRUSTED).
	OtherCADir  string
	OtherCACert string
	OtherCert   string
	OtherKey    string

	// Created is true when this call created or re-issued anything.
	Created bool
}

// demoRenewBefore re-issues demo certificates that expire sooner than this.
const demoRenewBefore = 7 * 24 * time.Hour

// EnsureDemo creates the demo PKI under dir once and reuses it on later
// runs (so curl lines and app configs keep working). A demo certificate
// that is missing, expiring, or names another fusion set or app is
// re-issued; the CAs are kept.
func EnsureDemo(dir, setID, appID string) (*Demo, error) {
	if _, err := identityURI(setID, appID); err != nil {
		return nil, fmt.Errorf("demo PKI: %w", err)
	}
	if err := os.MkdirAll(dir, modeDir); err != nil {
		return nil, fmt.Errorf("demo PKI: %w", err)
	}
	d := &Demo{
		Dir: dir, FusionSet: setID, AppID: appID,
		CADir:      filepath.Join(dir, "ca"),
		Bundle:     filepath.Join(dir, "app.p12"),
		OtherCADir: filepath.Join(dir, "other-ca"),
		OtherCert:  filepath.Join(dir, "other-cert.pem"),
		OtherKey:   filepath.Join(dir, "other-key.pem"),
		Cert:       filepath.Join(dir, "app-cert.pem"),
		Key:        filepath.Join(dir, "app-key.pem"),
	}
	d.CACert = filepath.Join(d.CADir, CACertFile)
	d.OtherCACert = filepath.Join(d.OtherCADir, CACertFile)
	d.BundlePassword = PasswordPath(d.Bundle)
	d.Record = RecordPathFor(d.Bundle)

	ca, created, err := ensureCA(d.CADir, "mcc demo CA")
	if err != nil {
		return nil, fmt.Errorf("demo PKI: %w", err)
	}
	d.Created = created
	other, created, err := ensureCA(d.OtherCADir, "mcc demo untrusted CA")
	if err != nil {
		return nil, fmt.Errorf("demo PKI: %w", err)
	}
	d.Created = d.Created || created

	build := certid.BuildInfo{ID: "demo-1", Date: time.Now(), User: "demo", Host: hostnameOr("localhost"), SDK: "mcc-demo"}
	req := IssueRequest{FusionSet: setID, AppID: appID, Build: build}

	if !demoCertUsable(ca, d.Cert, d.Key, setID, appID, d.Bundle, d.BundlePassword, d.Record) {
		for _, p := range []string{d.Bundle, d.BundlePassword, d.Record, d.Cert, d.Key} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("demo PKI: %w", err)
			}
		}
		res, err := ca.IssueFiles(IssueFilesOptions{Request: req, Out: d.Bundle})
		if err != nil {
			return nil, fmt.Errorf("demo PKI: %w", err)
		}
		if err := writePEMPair(res.Issued, d.Cert, d.Key); err != nil {
			return nil, fmt.Errorf("demo PKI: %w", err)
		}
		d.Created = true
	}
	if !demoCertUsable(other, d.OtherCert, d.OtherKey, setID, appID) {
		iss, err := other.Issue(req)
		if err != nil {
			return nil, fmt.Errorf("demo PKI: untrusted client: %w", err)
		}
		for _, p := range []string{d.OtherCert, d.OtherKey} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("demo PKI: %w", err)
			}
		}
		if err := writePEMPair(iss, d.OtherCert, d.OtherKey); err != nil {
			return nil, fmt.Errorf("demo PKI: %w", err)
		}
		d.Created = true
	}
	return d, nil
}

func ensureCA(dir, name string) (*CA, bool, error) {
	exists, err := fileExists(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, false, err
	}
	if exists {
		ca, err := LoadCA(dir)
		if err == nil && time.Until(ca.Cert.NotAfter) > DefaultLeafValidity+demoRenewBefore {
			return ca, false, nil
		}
		if err == nil {
			return nil, false, fmt.Errorf("%s expires soon; remove %s to recreate the demo PKI", dir, dir)
		}
		return nil, false, err
	}
	ca, err := InitCA(dir, CAOptions{Name: name})
	return ca, true, err
}

// demoCertUsable reports whether the PEM pair exists, was issued by ca for
// setID/appID, matches its key, is not close to expiry, and the extra files
// exist.
func demoCertUsable(ca *CA, certPath, keyPath, setID, appID string, extra ...string) bool {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return false
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	if s, a, n := certid.Identity(cert); n != 1 || s != setID || a != appID {
		return false
	}
	if time.Until(cert.NotAfter) < demoRenewBefore {
		return false
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return false
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil || !publicKeysEqual(cert.PublicKey, key.Public()) {
		return false
	}
	for _, p := range extra {
		if ok, _ := fileExists(p); !ok {
			return false
		}
	}
	return true
}

// writePEMPair writes the leaf (followed by its CA) and the key as PEM,
// both 0600 (the key is private; the certificate is kept private too, as
// the demo bundle's twin).
func writePEMPair(iss *Issued, certPath, keyPath string) error {
	keyPEM, err := marshalKeyPEM(iss.Key)
	if err != nil {
		return err
	}
	chain := append(pemEncode("CERTIFICATE", iss.Cert.Raw), pemEncode("CERTIFICATE", iss.CA.Raw)...)
	if err := writeNewFile(keyPath, keyPEM, modePrivate); err != nil {
		return err
	}
	return writeNewFile(certPath, chain, modePrivate)
}

func hostnameOr(def string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return def
	}
	return h
}
