package fusion

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// maxRevocationFileSize bounds a revocation list or CRL file (a million
// serials as hex lines is about 40 MiB).
const maxRevocationFileSize = 256 << 20

// revocationSource is where a set's revocation data comes from: inline
// serials and fingerprints, list files and CRLs. Reading it yields a
// revocationSet.
type revocationSource struct {
	serials      [][]byte
	fingerprints [][sha256.Size]byte
	files        []string // absolute
	crls         []string // absolute
	fileFields   []string // field path of each file, for problems
	crlFields    []string
	// issuers may sign CRLs: the set's CAs and configured intermediates.
	issuers []*x509.Certificate
	// remote are the revocation.urls (remote_config.go, remote.go).
	remote remoteSource
}

// revocationSet is one generation of a set's revocation data. It is never
// modified after it is built; reloads swap in a new one.
type revocationSet struct {
	gen uint64
	// serials are keyed by the serial's big-endian magnitude bytes without
	// leading zeros, so a lookup is m[string(b)] without allocation.
	serials      map[string]struct{}
	fingerprints map[[sha256.Size]byte]struct{}
	// lists are the parsed list files and CRLs: shared by every set that
	// names the same file content (see filecache.go), never modified.
	lists []*revList
	// crls describes every CRL read, for freshness checks.
	crls []*crlInfo
	// The first fileLists lists and fileCRLs crls come from files; the
	// rest are the last good CRLs of the revocation URLs, whose versions
	// remoteVersions records by URL (0: none; see remote.go).
	fileLists, fileCRLs int
	remoteVersions      []uint64
}

// revList is what one revocation list file or CRL file revokes.
type revList struct {
	serials      map[string]struct{}
	fingerprints map[[sha256.Size]byte]struct{}
}

// fieldError is a problem in a set's revocation data.
type fieldError struct {
	field string
	msg   string
}

// revoked reports whether the serial (magnitude bytes) or the certificate
// fingerprint is revoked, and which of them matched.
func (rs *revocationSet) revoked(serial []byte, fp *[sha256.Size]byte) (bySerial, byFingerprint bool) {
	if _, ok := rs.serials[string(serial)]; ok {
		return true, false
	}
	for _, l := range rs.lists {
		if _, ok := l.serials[string(serial)]; ok {
			return true, false
		}
	}
	if _, ok := rs.fingerprints[*fp]; ok {
		return false, true
	}
	for _, l := range rs.lists {
		if _, ok := l.fingerprints[*fp]; ok {
			return false, true
		}
	}
	return false, false
}

// loadWith reads every revocation source into a new generation, within a
// load that may read the same files for other sets.
func (src *revocationSource) loadWith(gen uint64, files *loadFiles) (*revocationSet, []fieldError) {
	rs := &revocationSet{
		gen:          gen,
		serials:      make(map[string]struct{}, len(src.serials)),
		fingerprints: make(map[[sha256.Size]byte]struct{}, len(src.fingerprints)),
	}
	for _, s := range src.serials {
		rs.serials[string(s)] = struct{}{}
	}
	for _, f := range src.fingerprints {
		rs.fingerprints[f] = struct{}{}
	}
	var errs []fieldError
	for i, path := range src.files {
		if err := rs.readList(files, path); err != nil {
			errs = append(errs, fieldError{field: src.fileFields[i], msg: err.Error()})
		}
	}
	for i, path := range src.crls {
		if len(src.issuers) == 0 {
			break // no usable CA: that problem is reported already
		}
		if err := rs.readCRL(files, path, src.crlFields[i], src.issuers); err != nil {
			errs = append(errs, fieldError{field: src.crlFields[i], msg: err.Error()})
		}
	}
	rs.addRemote(src)
	return rs, errs
}

// readList adds a revocation list as written by `mcc revoke`.
func (rs *revocationSet) readList(files *loadFiles, path string) error {
	l, err := parseFile(files, path, maxRevocationFileSize, "revocation list", parseList)
	if err != nil {
		return err
	}
	rs.lists = append(rs.lists, l)
	return nil
}

// parseList parses a revocation list: one hex serial or "sha256:<hex>"
// fingerprint per line, '#' starts a comment.
func parseList(path string, data []byte) (*revList, error) {
	l := &revList{serials: map[string]struct{}{}, fingerprints: map[[sha256.Size]byte]struct{}{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if rest, ok := cutPrefixFold(line, "sha256:"); ok {
			fp, err := parseFingerprint(rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			l.fingerprints[fp] = struct{}{}
			continue
		}
		serial, err := parseSerial(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		l.serials[string(serial)] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return l, nil
}

// crlFile is a parsed CRL file: its CRLs and what they revoke together.
type crlFile struct {
	crls    []*x509.RevocationList
	revoked *revList
	// signers remembers which issuer verified each CRL's signature, by
	// CRL index and issuer certificate hash, so that sets sharing the CA
	// verify it once.
	signers sync.Map // crlSignerKey -> bool
}

type crlSignerKey struct {
	crl    int
	issuer [sha256.Size]byte
}

// parseCRLFile parses a PEM (one or more X509 CRL blocks) or DER CRL file.
func parseCRLFile(path string, data []byte) (*crlFile, error) {
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "X509 CRL" {
				return nil, fmt.Errorf("%s: unexpected PEM block %q, want X509 CRL", path, b.Type)
			}
			ders = append(ders, b.Bytes)
		}
		if len(ders) == 0 {
			return nil, fmt.Errorf("%s: no PEM X509 CRL block found", path)
		}
	} else {
		ders = [][]byte{data}
	}
	cf := &crlFile{revoked: &revList{serials: map[string]struct{}{}, fingerprints: map[[sha256.Size]byte]struct{}{}}}
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("%s: parsing CRL: %w", path, err)
		}
		cf.crls = append(cf.crls, crl)
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil {
				cf.revoked.serials[string(e.SerialNumber.Bytes())] = struct{}{}
			}
		}
	}
	return cf, nil
}

// signer is crlSigner for the file's i-th CRL, remembered per issuer.
func (cf *crlFile) signer(i int, issuers []*x509.Certificate) *x509.Certificate {
	for _, is := range issuers {
		k := crlSignerKey{i, sha256.Sum256(is.Raw)}
		ok, known := cf.signers.Load(k)
		if !known {
			ok = crlSigner(cf.crls[i], []*x509.Certificate{is}) != nil
			cf.signers.Store(k, ok)
		}
		if ok.(bool) {
			return is
		}
	}
	return nil
}

// readCRL adds a PEM or DER CRL after checking that one of issuers signed
// it and that it is not older than a CRL of the same issuer seen before.
func (rs *revocationSet) readCRL(files *loadFiles, path, field string, issuers []*x509.Certificate) error {
	cf, err := parseFile(files, path, maxRevocationFileSize, "crl", parseCRLFile)
	if err != nil {
		return err
	}
	infos, err := admitCRLs(cf, path, field, issuers)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	rs.crls = append(rs.crls, infos...)
	rs.lists = append(rs.lists, cf.revoked)
	return nil
}

// crlSigner returns the issuer whose key signed crl, or nil.
func crlSigner(crl *x509.RevocationList, issuers []*x509.Certificate) *x509.Certificate {
	for _, c := range issuers {
		if crl.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// serialSeparators are what a hex serial may be grouped by. Built once: a
// replacer per call cost most of the time of reading a long list.
var serialSeparators = strings.NewReplacer(":", "", " ", "")

// parseSerial parses a hex serial, ignoring case, colons, spaces and a 0x
// prefix (as pki.ParseSerial does),
// into its magnitude bytes without leading zeros.
func parseSerial(s string) ([]byte, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(h, "0x")
	h = serialSeparators.Replace(h)
	if h == "" {
		return nil, errors.New("empty serial")
	}
	if len(h)%2 == 1 {
		h = "0" + h
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("serial %s is not hex", strconv.Quote(truncate(s, 80)))
	}
	if len(b) > 64 {
		return nil, fmt.Errorf("serial %s is longer than 64 bytes", strconv.Quote(truncate(s, 80)))
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	// Serial zero leaves no bytes, matching big.Int(0).Bytes().
	return b, nil
}

// parseFingerprint parses a SHA-256 fingerprint as hex, ignoring case and
// colons, with or without a "sha256:" prefix.
func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	t, _ := cutPrefixFold(strings.TrimSpace(s), "sha256:")
	h := strings.ToLower(strings.ReplaceAll(t, ":", ""))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return fp, fmt.Errorf("fingerprint %s is not 64 hex digits of SHA-256", strconv.Quote(truncate(s, 80)))
	}
	copy(fp[:], b)
	return fp, nil
}

// serialHex formats serial magnitude bytes as lowercase hex without
// leading zeros ("0" for zero), the form certificates and events use.
func serialHex(b []byte) string {
	s := strings.TrimLeft(hex.EncodeToString(b), "0")
	if s == "" {
		return "0"
	}
	return s
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
