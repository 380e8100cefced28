package pki

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestAuditChainVerifies(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	_, res := issueToFiles(t, ca)
	issueToFiles(t, ca)
	if _, err := ca.Revoke(RevokeRequest{Serial: res.Issued.Cert.SerialNumber, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	sum, err := VerifyAudit(ca.Path(AuditFile), ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Entries != 4 { // init, issue, issue, revoke
		t.Fatalf("entries = %d, want 4", sum.Entries)
	}
	entries, err := ReadAudit(ca.Path(AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	if entries[1].Action != AuditIssue || entries[1].Serial != FormatSerial(res.Issued.Cert.SerialNumber) ||
		entries[1].BuildID != "build-4711" || entries[3].Action != AuditRevoke || entries[3].Reason != "keyCompromise" {
		t.Errorf("entries: %+v", entries)
	}
	if entries[0].Prev != genesisHash || entries[2].Prev == entries[1].Prev {
		t.Error("prev hashes do not chain")
	}
}

func TestAuditTamperingIsDetected(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	issueToFiles(t, ca)
	issueToFiles(t, ca)
	path := ca.Path(AuditFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(orig, []byte("\n"))
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"edit middle entry": {bytes.Replace(orig, []byte(`"buildId":"build-4711"`), []byte(`"buildId":"build-0001"`), 1), "line 2"},
		"edit last entry":   {append(bytes.Join(lines[:2], nil), bytes.Replace(lines[2], []byte("build-4711"), []byte("build-4712"), 1)...), "line 3: entry was edited"},
		"remove entry":      {append(bytes.Clone(lines[0]), lines[2]...), "line 2: sequence number"},
		"reorder":           {bytes.Join([][]byte{lines[0], lines[2], lines[1]}, nil), "line 2"},
		"truncated line":    {orig[:len(orig)-5], "incomplete last line"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := VerifyAudit(path, ca.Cert)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// A damaged log is not extended.
	os.WriteFile(path, bytes.Replace(orig, []byte(`"buildId":"build-4711"`), []byte(`"buildId":"build-0001"`), 1), 0o600)
	if _, err := ca.Revoke(RevokeRequest{Serial: ca.Cert.SerialNumber, Force: true}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("revoke with a damaged audit log: err = %v", err)
	}
	os.WriteFile(path, orig, 0o600)
	if _, err := VerifyAudit(path, ca.Cert); err != nil {
		t.Fatalf("restored log: %v", err)
	}
}

// TestAuditEntryOneMustBeInit: a log signed by the right key but not
// starting with this CA's init entry (a log restarted after deletion by
// someone holding the key, or by an old mcc) does not verify, and
// appending to it is refused.
func TestAuditEntryOneMustBeInit(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	path := ca.Path(AuditFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// What the old code did after a deletion: start over with "issue".
	e := AuditEntry{Seq: 1, Time: time.Now().UTC(), Action: AuditIssue, Serial: "ab", Prev: genesisHash}
	unsigned, _ := json.Marshal(e)
	alg, sig, err := signDigest(ca.Key, unsigned)
	if err != nil {
		t.Fatal(err)
	}
	e.SigAlg, e.Sig = alg, base64.StdEncoding.EncodeToString(sig)
	line, _ := json.Marshal(e)
	os.WriteFile(path, append(line, '\n'), 0o600)
	if _, err := VerifyAudit(path, ca.Cert); err == nil || !strings.Contains(err.Error(), "line 1: not the init entry of this CA") {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if _, err := ca.Revoke(RevokeRequest{Serial: ca.Cert.SerialNumber, Force: true}); err == nil || !strings.Contains(err.Error(), "not the init entry") {
		t.Fatalf("Revoke appended to a log without init entry: %v", err)
	}
}
