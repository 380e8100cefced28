package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// IssueFilesOptions is one complete issuance: certificate, bundles, record
// and audit log entry.
type IssueFilesOptions struct {
	Request IssueRequest
	// Out is the bundle path, in Format; its password goes to
	// PasswordPath(Out). Both 0600.
	Out string
	// Format is Out's bundle format: FormatModern2023 when empty, or
	// PlatformFormat's choice for an app platform.
	Format BundleFormat
	// LegacyOut, when set, also writes a LegacyDES (3DES) bundle for old
	// iOS and Android importers, with its own password file.
	LegacyOut string
	// RecordPath is the certified-secure record; Out+".certified.json"
	// when empty. Public (0644): it holds no secret.
	RecordPath  string
	Protections *Protections
	// Check, when set, vets the new certificate before anything is written
	// (the CLI uses it to ask the fusion set whether it would accept it).
	Check func(*Issued) error
}

// WrittenFile is a file an operation wrote.
type WrittenFile struct {
	Path    string
	What    string
	Private bool // 0600: key, password or bundle
}

// IssueFilesResult is what IssueFiles produced.
type IssueFilesResult struct {
	Issued *Issued
	Record *Record
	Files  []WrittenFile
}

// RecordPathFor is the default record path for a bundle path.
func RecordPathFor(out string) string { return out + ".certified.json" }

// IssueFiles issues a certificate, writes the bundle(s), password file(s)
// and the signed record, and appends the issuance to the audit log. It
// refuses to overwrite any output file, and removes what it wrote when a
// later step fails.
func (ca *CA) IssueFiles(o IssueFilesOptions) (*IssueFilesResult, error) {
	if o.Out == "" {
		return nil, errors.New("no output bundle path")
	}
	if o.RecordPath == "" {
		o.RecordPath = RecordPathFor(o.Out)
	}
	outputs := []string{o.Out, PasswordPath(o.Out), o.RecordPath}
	if o.LegacyOut != "" {
		outputs = append(outputs, o.LegacyOut, PasswordPath(o.LegacyOut))
	}
	seen := map[string]bool{}
	for _, p := range outputs {
		abs, _ := filepath.Abs(p)
		if seen[abs] {
			return nil, fmt.Errorf("output path %s is used twice", p)
		}
		seen[abs] = true
		exists, err := fileExists(p)
		if err != nil {
			return nil, err
		}
		if exists {
			return nil, fmt.Errorf("%s already exists; refusing to overwrite it", p)
		}
	}
	unlock, err := lockDir(ca.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if _, err := ca.auditHead(AuditIssue); err != nil {
		return nil, err
	}
	// The converse of IssueControlCert's rule: app bundles never come from
	// a CA that signs control-channel certificates.
	if ctl, err := auditHasAction(ca.Path(AuditFile), AuditIssueControl); err != nil {
		return nil, err
	} else if ctl {
		return nil, fmt.Errorf("CA %s issues control-channel certificates (mcc cert create); app builds need a CA of their own, "+
			"or every app bundle would be trusted on the control channel", ca.Dir)
	}
	iss, err := ca.Issue(o.Request)
	if err != nil {
		return nil, err
	}
	if o.Check != nil {
		if err := o.Check(iss); err != nil {
			return nil, err
		}
	}
	format := o.Format
	if format == "" {
		format = FormatModern2023
	}
	modern, err := EncodeBundle(iss, format)
	if err != nil {
		return nil, err
	}
	in := RecordInput{Issued: iss, Bundle: modern, BundleFile: filepath.Base(o.Out), Protections: o.Protections}
	var legacy *Bundle
	if o.LegacyOut != "" {
		if legacy, err = EncodeBundle(iss, FormatLegacyDES); err != nil {
			return nil, err
		}
		in.Legacy, in.LegacyFile = legacy, filepath.Base(o.LegacyOut)
	}
	rec, err := ca.NewRecord(in)
	if err != nil {
		return nil, err
	}
	recData, err := rec.Encode()
	if err != nil {
		return nil, fmt.Errorf("encoding record: %w", err)
	}

	res := &IssueFilesResult{Issued: iss, Record: rec}
	ok := false
	defer func() {
		if !ok {
			for _, f := range res.Files {
				os.Remove(f.Path)
			}
		}
	}()
	if err := modern.Write(o.Out); err != nil {
		return nil, err
	}
	res.Files = append(res.Files,
		WrittenFile{o.Out, formatDescription(format), true},
		WrittenFile{PasswordPath(o.Out), "bundle password", true})
	if legacy != nil {
		if err := legacy.Write(o.LegacyOut); err != nil {
			return nil, err
		}
		res.Files = append(res.Files,
			WrittenFile{o.LegacyOut, "legacy PKCS#12 bundle (3DES, for old iOS/Android importers)", true},
			WrittenFile{PasswordPath(o.LegacyOut), "legacy bundle password", true})
	}
	if err := writeNewFile(o.RecordPath, recData, modePublic); err != nil {
		return nil, fmt.Errorf("writing record: %w", err)
	}
	res.Files = append(res.Files, WrittenFile{o.RecordPath, "certified-secure record (signed)", false})
	if _, err := ca.appendAudit(AuditEntry{
		Time:      ca.now(),
		Action:    AuditIssue,
		Serial:    rec.Certificate.Serial,
		SHA256:    rec.Certificate.SHA256,
		FusionSet: rec.FusionSet,
		AppID:     rec.AppID,
		BuildID:   rec.Build.ID,
		NotAfter:  rec.Certificate.NotAfter,
		Detail:    "bundle sha256:" + modern.SHA256,
	}); err != nil {
		return nil, err
	}
	ok = true
	return res, nil
}

// formatDescription is how the CLI lists a bundle file it wrote.
func formatDescription(f BundleFormat) string {
	switch f {
	case FormatLegacyEnveloped:
		return "3DES PKCS#12 bundle in an AES-256-GCM envelope (for iOS and older Android apps)"
	case FormatLegacyDES:
		return "legacy PKCS#12 bundle (3DES, for old iOS/Android importers)"
	}
	return "PKCS#12 bundle (AES-256-CBC, PBKDF2-HMAC-SHA256)"
}
