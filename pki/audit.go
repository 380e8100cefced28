package pki

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Audit actions.
const (
	AuditInit   = "init"
	AuditIssue  = "issue"
	AuditRevoke = "revoke"
	// AuditIssueControl records a control-channel certificate (mcc cert
	// create): mTLS for mcc xds, mcc authz and Envoy, not an app build.
	AuditIssueControl = "issue-control"
)

// genesisHash is the Prev of the first entry.
var genesisHash = strings.Repeat("0", 64)

// AuditEntry is one line of a CA's audit log. Each entry carries the SHA-256
// of the previous line (so removing, reordering or editing an entry breaks
// every later link) and a signature by the CA key over the entry without
// its signature (so editing the last entry, or rebuilding the whole chain,
// needs the CA key). What the chain cannot show is a cut-off tail: compare
// the head hash `mcc ca audit verify` prints with a copy kept elsewhere.
type AuditEntry struct {
	Seq       int       `json:"seq"`
	Time      time.Time `json:"time"`
	Action    string    `json:"action"`
	Serial    string    `json:"serial,omitempty"`
	SHA256    string    `json:"sha256,omitempty"` // certificate fingerprint
	FusionSet string    `json:"fusionSet,omitempty"`
	AppID     string    `json:"appId,omitempty"`
	BuildID   string    `json:"buildId,omitempty"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	Prev      string    `json:"prev"`
	SigAlg    string    `json:"sigAlg,omitempty"`
	Sig       string    `json:"sig,omitempty"`
}

// AuditSummary is the result of verifying an audit log.
type AuditSummary struct {
	Entries int
	Head    string // SHA-256 of the last line; genesis hash when empty
}

// appendAudit appends e to the CA's log (created 0600 by InitCA only),
// filling in Seq, Prev and the signature by the CA key. It checks the
// existing chain first and refuses to extend a broken one, and it refuses
// to start a new log for a CA that already exists: a deleted audit.log
// would otherwise go unnoticed, the next issuance starting a fresh, valid
// looking chain. Entry 1 must be the "init" entry naming this CA's
// fingerprint. Callers hold the CA directory lock.
func (ca *CA) appendAudit(e AuditEntry) (AuditEntry, error) {
	if ca.Key == nil {
		return AuditEntry{}, errors.New("audit log: no signing key")
	}
	sum, err := ca.auditHead(e.Action)
	if err != nil {
		return AuditEntry{}, err
	}
	path := ca.Path(AuditFile)
	e.Seq = sum.Entries + 1
	e.Prev = sum.Head
	e.Time = e.Time.UTC()
	e.SigAlg, e.Sig = "", ""
	unsigned, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit log: %w", err)
	}
	alg, sig, err := signDigest(ca.Key, unsigned)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit log: signing entry: %w", err)
	}
	e.SigAlg, e.Sig = alg, base64.StdEncoding.EncodeToString(sig)
	line, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("audit log: %w", err)
	}
	flags := os.O_WRONLY | os.O_APPEND
	if e.Action == AuditInit {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, modePrivate)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("opening audit log: %w", err)
	}
	// One write: the line and its newline land together.
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return AuditEntry{}, fmt.Errorf("writing audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return AuditEntry{}, fmt.Errorf("writing audit log: %w", err)
	}
	return e, f.Close()
}

// auditHead checks that an entry with action may be appended to the CA's
// log and returns the log's current summary: the log must exist (only the
// init entry starts one), its chain must be intact, and entry 1 must be
// this CA's init entry. Operations call it before changing anything, so a
// missing log stops them before a CRL or bundle is written.
func (ca *CA) auditHead(action string) (AuditSummary, error) {
	path := ca.Path(AuditFile)
	sum, err := verifyAuditFile(path, nil, ca.Fingerprint())
	switch {
	case errors.Is(err, os.ErrNotExist) || (err == nil && sum.Entries == 0):
		if action != AuditInit {
			return sum, fmt.Errorf("audit log %s is missing or empty but the CA exists; refusing to start a new log "+
				"(restore audit.log from a backup: a new log would hide every earlier issuance and revocation)", path)
		}
		return AuditSummary{Head: genesisHash}, nil
	case err != nil:
		return sum, fmt.Errorf("audit log %s is damaged, not appending: %w", path, err)
	case action == AuditInit:
		return sum, fmt.Errorf("audit log %s already has entries; refusing to write a second init entry", path)
	}
	return sum, nil
}

// VerifyAudit checks the whole log at path: every line parses, sequence
// numbers count up from 1, each Prev is the SHA-256 of the line before, and
// each entry's signature verifies with the CA certificate, and entry 1 is
// the "init" entry naming this CA's fingerprint (so a log started afresh
// after the original was deleted does not verify). A missing or empty log
// is an error.
func VerifyAudit(path string, ca *x509.Certificate) (AuditSummary, error) {
	if ca == nil {
		return AuditSummary{}, errors.New("audit log: no CA certificate to verify with")
	}
	sum, err := verifyAuditFile(path, ca, Fingerprint(ca.Raw))
	if errors.Is(err, os.ErrNotExist) {
		return sum, errors.New("audit log is missing (deleted?): restore it from a backup")
	}
	if err == nil && sum.Entries == 0 {
		return sum, errors.New("audit log is empty: entry 1 must be the CA's init entry")
	}
	return sum, err
}

// ReadAudit returns the entries of a log without verifying it (use
// VerifyAudit for that); a missing log has no entries.
func ReadAudit(path string) ([]AuditEntry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	var out []AuditEntry
	for i, line := range bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e AuditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("audit log line %d: %w", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// verifyAuditFile checks the chain (and the signatures when ca is set) and,
// when caSHA256 is set, that entry 1 is the init entry of that CA.
func verifyAuditFile(path string, ca *x509.Certificate, caSHA256 string) (AuditSummary, error) {
	f, err := os.Open(path)
	if err != nil {
		return AuditSummary{Head: genesisHash}, err
	}
	defer f.Close()
	sum := AuditSummary{Head: genesisHash}
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				return sum, fmt.Errorf("line %d: incomplete last line (no newline)", n)
			}
			return sum, nil
		}
		if err != nil {
			return sum, fmt.Errorf("reading: %w", err)
		}
		line = line[:len(line)-1]
		e, err := checkAuditLine(line, n, sum.Head, ca)
		if err != nil {
			return sum, fmt.Errorf("line %d: %w", n, err)
		}
		if n == 1 && caSHA256 != "" && (e.Action != AuditInit || e.SHA256 != caSHA256) {
			return sum, fmt.Errorf("line 1: not the init entry of this CA (action %q, sha256 %q; want %q, %s): the log was replaced or belongs to another CA",
				e.Action, e.SHA256, AuditInit, caSHA256)
		}
		h := sha256.Sum256(line)
		sum.Head = hex.EncodeToString(h[:])
		sum.Entries = n
	}
}

func checkAuditLine(line []byte, n int, prev string, ca *x509.Certificate) (AuditEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e AuditEntry
	if err := dec.Decode(&e); err != nil {
		return AuditEntry{}, fmt.Errorf("not a valid entry: %w", err)
	}
	if e.Seq != n {
		return AuditEntry{}, fmt.Errorf("sequence number %d, want %d (entry removed or reordered)", e.Seq, n)
	}
	if e.Prev != prev {
		return AuditEntry{}, errors.New("hash chain broken: prev does not match the previous entry (an earlier entry was edited, removed or reordered)")
	}
	if ca == nil {
		return e, nil
	}
	sig, err := base64.StdEncoding.DecodeString(e.Sig)
	if err != nil || len(sig) == 0 {
		return AuditEntry{}, errors.New("missing or malformed signature")
	}
	alg := e.SigAlg
	e.SigAlg, e.Sig = "", ""
	unsigned, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, err
	}
	if err := verifyDigest(ca.PublicKey, alg, unsigned, sig); err != nil {
		return AuditEntry{}, fmt.Errorf("entry was edited: %w", err)
	}
	// The signature covers the re-encoded entry; also require the line to
	// be exactly that encoding, so no byte can change unnoticed.
	e.SigAlg, e.Sig = alg, base64.StdEncoding.EncodeToString(sig)
	canon, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, err
	}
	if !bytes.Equal(canon, line) {
		return AuditEntry{}, errors.New("entry was edited: not in canonical form")
	}
	return e, nil
}

// issuedSerial reports whether the audit log records the issuance of serial.
func issuedSerial(path, serial string) (bool, error) {
	entries, err := ReadAudit(path)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if (e.Action == AuditIssue || e.Action == AuditIssueControl) && e.Serial == serial {
			return true, nil
		}
	}
	return false, nil
}

// auditHasAction reports whether the log holds an entry with action.
func auditHasAction(path, action string) (bool, error) {
	entries, err := ReadAudit(path)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Action == action {
			return true, nil
		}
	}
	return false, nil
}
