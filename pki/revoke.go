package pki

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"
)

// DefaultCRLValidity is the distance from a CRL's ThisUpdate to NextUpdate
// unless told otherwise. Re-sign before then (`mcc ca crl`), or gateways
// that honour NextUpdate treat the CRL as stale.
const DefaultCRLValidity = 7 * 24 * time.Hour

// RFC 5280 CRLReason names, as accepted by --reason.
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keycompromise":        1,
	"cacompromise":         2,
	"affiliationchanged":   3,
	"superseded":           4,
	"cessationofoperation": 5,
	"certificatehold":      6,
	"privilegewithdrawn":   9,
	"aacompromise":         10,
}

var reasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonNames lists the accepted revocation reasons.
func ReasonNames() []string {
	codes := make([]int, 0, len(reasonNames))
	for c := range reasonNames {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = reasonNames[c]
	}
	return out
}

// ParseReason maps an RFC 5280 reason name ("keyCompromise",
// "key-compromise", any case) to its code; "" is unspecified.
func ParseReason(s string) (int, error) {
	k := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(s))
	if k == "" {
		return 0, nil
	}
	code, ok := reasonCodes[k]
	if !ok {
		return 0, fmt.Errorf("unknown revocation reason %q (want one of %s)", s, strings.Join(ReasonNames(), ", "))
	}
	return code, nil
}

// RevokeRequest describes one revocation.
type RevokeRequest struct {
	Serial *big.Int
	Reason string // RFC 5280 reason name; "" is unspecified
	// CRLValidity sets the new CRL's NextUpdate; DefaultCRLValidity when zero.
	CRLValidity time.Duration
	// Force revokes a serial the audit log does not show this CA issuing
	// (a certificate of another CA, or one issued before the log existed).
	// Without it such a serial is refused with ErrUnknownSerial: it is
	// usually a typo, and revoking a typo leaves the intended certificate
	// valid while the operator believes it revoked.
	Force bool
}

// ErrUnknownSerial is returned by Revoke for a serial this CA's audit log
// does not record issuing, unless RevokeRequest.Force is set.
var ErrUnknownSerial = errors.New("serial not issued by this CA")

// RevokeResult says what Revoke did.
type RevokeResult struct {
	Serial         string // FormatSerial form, as written to revoked.txt
	Reason         string
	AlreadyRevoked bool // the serial was already on the CRL; the CRL was re-signed anyway
	Known          bool // the audit log records this CA issuing the serial
	CRLNumber      *big.Int
	NextUpdate     time.Time
}

// Revoke adds a serial to revoked.txt and to a new CRL (next CRL number)
// and records it in the audit log. Serials the audit log does not show this
// CA issuing are refused unless req.Force (then Known is false and the
// caller warns). Both files are replaced atomically.
func (ca *CA) Revoke(req RevokeRequest) (*RevokeResult, error) {
	if req.Serial == nil || req.Serial.Sign() <= 0 {
		return nil, errors.New("revoke: serial number must be positive")
	}
	code, err := ParseReason(req.Reason)
	if err != nil {
		return nil, err
	}
	if req.CRLValidity == 0 {
		req.CRLValidity = DefaultCRLValidity
	}
	unlock, err := lockDir(ca.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// A missing or damaged audit log stops the revocation before the CRL
	// changes (the log is also what tells issued serials from typos).
	if _, err := ca.auditHead(AuditRevoke); err != nil {
		return nil, err
	}
	res := &RevokeResult{Serial: FormatSerial(req.Serial), Reason: reasonNames[code]}
	if res.Known, err = issuedSerial(ca.Path(AuditFile), res.Serial); err != nil {
		return nil, err
	}
	if !res.Known && !req.Force {
		return nil, fmt.Errorf("serial %s: %w (not in its audit log); check the serial, or force it", res.Serial, ErrUnknownSerial)
	}
	prev, err := ca.LoadCRL()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var entries []x509.RevocationListEntry
	if prev != nil {
		entries = prev.RevokedCertificateEntries
	}
	now := ca.now()
	for _, e := range entries {
		if e.SerialNumber.Cmp(req.Serial) == 0 {
			res.AlreadyRevoked = true
		}
	}
	if !res.AlreadyRevoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: req.Serial, RevocationTime: now.UTC(), ReasonCode: code})
	}
	if err := ca.addRevokedLine(res.Serial, now, res.Reason); err != nil {
		return nil, err
	}
	crl, err := ca.writeCRL(prev, entries, req.CRLValidity)
	if err != nil {
		return nil, err
	}
	res.CRLNumber, res.NextUpdate = crl.Number, crl.NextUpdate
	if !res.AlreadyRevoked {
		if _, err := ca.appendAudit(AuditEntry{
			Time: now, Action: AuditRevoke, Serial: res.Serial, Reason: res.Reason,
		}); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// RefreshCRL re-signs the current CRL with the next CRL number and a new
// NextUpdate, keeping its entries (run it from cron before NextUpdate).
func (ca *CA) RefreshCRL(validity time.Duration) (*x509.RevocationList, error) {
	if validity == 0 {
		validity = DefaultCRLValidity
	}
	unlock, err := lockDir(ca.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := ca.LoadCRL()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var entries []x509.RevocationListEntry
	if prev != nil {
		entries = prev.RevokedCertificateEntries
	}
	return ca.writeCRL(prev, entries, validity)
}

// LoadCRL reads crl.pem and checks it is signed by this CA. A missing file
// returns an error wrapping os.ErrNotExist.
func (ca *CA) LoadCRL() (*x509.RevocationList, error) {
	data, err := os.ReadFile(ca.Path(CRLFile))
	if err != nil {
		return nil, fmt.Errorf("reading CRL: %w", err)
	}
	if block, _ := pem.Decode(data); block != nil {
		data = block.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", ca.Path(CRLFile), err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("%s is not signed by this CA: %w", ca.Path(CRLFile), err)
	}
	return crl, nil
}

// writeRevocations writes the initial revoked.txt and CRL of a new CA.
func (ca *CA) writeRevocations(entries []x509.RevocationListEntry, validity time.Duration) error {
	header := "# mcc revocation list: one lower-case hex serial (or sha256:<hex> fingerprint) per line.\n" +
		"# Written by `mcc revoke`; gateways re-read it when it changes.\n"
	if err := writeFileAtomic(ca.Path(RevokedFile), []byte(header), modePublic); err != nil {
		return fmt.Errorf("writing %s: %w", RevokedFile, err)
	}
	_, err := ca.writeCRL(nil, entries, validity)
	return err
}

func (ca *CA) writeCRL(prev *x509.RevocationList, entries []x509.RevocationListEntry, validity time.Duration) (*x509.RevocationList, error) {
	number := big.NewInt(1)
	if prev != nil && prev.Number != nil {
		number = new(big.Int).Add(prev.Number, big.NewInt(1))
	}
	der, err := ca.SignCRL(number, entries, validity)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(ca.Path(CRLFile), pemEncode("X509 CRL", der), modePublic); err != nil {
		return nil, fmt.Errorf("writing CRL: %w", err)
	}
	return x509.ParseRevocationList(der)
}

// addRevokedLine appends serial to revoked.txt unless it is listed already,
// keeping every existing line (hand-added fingerprints included).
func (ca *CA) addRevokedLine(serial string, at time.Time, reason string) error {
	path := ca.Path(RevokedFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", RevokedFile, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if n, err := ParseSerial(line); err == nil && FormatSerial(n) == serial {
			return nil
		}
	}
	var buf bytes.Buffer
	buf.Write(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		buf.WriteByte('\n')
	}
	fmt.Fprintf(&buf, "# %s reason=%s\n%s\n", at.UTC().Format(time.RFC3339), reason, serial)
	if err := writeFileAtomic(path, buf.Bytes(), modePublic); err != nil {
		return fmt.Errorf("writing %s: %w", RevokedFile, err)
	}
	return nil
}

// RevocationStatus says whether a certificate is on a CA's revocation
// lists, and where.
type RevocationStatus struct {
	Revoked bool
	Source  string    // the file that lists it
	Reason  string    // CRL reason name, when the CRL lists it
	At      time.Time // CRL revocation time, when the CRL lists it
	// StaleCRL is set when the CRL is past its NextUpdate: a newer CRL
	// may list more.
	StaleCRL bool
	Checked  []string // the files that were read
}

// CheckRevocation looks a certificate (serial, and SHA-256 fingerprint for
// sha256: lines) up in a CRL signed by ca and in a revoked.txt list. Either
// path may be empty; a named file that is missing or a CRL not signed by ca
// is an error, since a check that silently reads nothing would report a
// revoked certificate as fine.
func CheckRevocation(ca *x509.Certificate, crlPath, listPath string, serial *big.Int, sha256Hex string, now time.Time) (*RevocationStatus, error) {
	st := &RevocationStatus{}
	if crlPath != "" {
		data, err := os.ReadFile(crlPath)
		if err != nil {
			return nil, fmt.Errorf("reading CRL: %w", err)
		}
		if block, _ := pem.Decode(data); block != nil {
			data = block.Bytes
		}
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", crlPath, err)
		}
		if err := crl.CheckSignatureFrom(ca); err != nil {
			return nil, fmt.Errorf("%s is not signed by the CA: %w", crlPath, err)
		}
		st.Checked = append(st.Checked, crlPath)
		st.StaleCRL = !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate)
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				st.Revoked, st.Source, st.At = true, crlPath, e.RevocationTime
				st.Reason = reasonNames[e.ReasonCode]
				return st, nil
			}
		}
	}
	if listPath != "" {
		data, err := os.ReadFile(listPath)
		if err != nil {
			return nil, fmt.Errorf("reading revocation list: %w", err)
		}
		st.Checked = append(st.Checked, listPath)
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if fp, ok := strings.CutPrefix(strings.ToLower(line), "sha256:"); ok {
				if sha256Hex != "" && strings.ReplaceAll(fp, ":", "") == strings.ToLower(sha256Hex) {
					st.Revoked, st.Source = true, listPath
					return st, nil
				}
				continue
			}
			if n, err := ParseSerial(line); err == nil && n.Cmp(serial) == 0 {
				st.Revoked, st.Source = true, listPath
				return st, nil
			}
		}
	}
	return st, nil
}
