package fusion

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/textproto"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// reHeaderName is an HTTP header field name (RFC 9110 token).
var reHeaderName = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")

// knownCurves are the key types allowed_curves may name.
var knownCurves = []string{"P-256", "P-384", "P-521", "Ed25519"}

// maxCAFileSize bounds a CA bundle file.
const maxCAFileSize = 4 << 20

// setCompiler collects the problems of one set.
type setCompiler struct {
	files    *loadFiles // this load's reads (see filecache.go)
	file     string
	prefix   string // "fusion_sets[3]" in a file, "" for CompileSet
	ix       *nodeIndex
	problems []Problem
}

func (c *setCompiler) path(field string) string {
	if c.prefix == "" {
		return field
	}
	if field == "" {
		return c.prefix
	}
	return c.prefix + "." + field
}

func (c *setCompiler) addf(field, format string, args ...any) {
	p := c.path(field)
	line := 0
	if c.ix != nil {
		line = c.ix.valueLine(p)
	}
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Field: p, Msg: fmt.Sprintf(format, args...)})
}

// CompileSet validates and compiles one set (used by the loader and by
// Caddy's inline fusion_set blocks). Relative paths resolve against baseDir;
// filename names the source in problems. Problems are a *LoadError whose
// fields are relative to the set ("trusted_ca.file").
func CompileSet(sc SetConfig, baseDir, filename string) (*Set, error) {
	s, problems := compileSet(sc, baseDir, filename, "", nil, newLoadFiles())
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &LoadError{Problems: problems}
	}
	return s, nil
}

func compileSet(sc SetConfig, baseDir, filename, prefix string, ix *nodeIndex, files *loadFiles) (*Set, []Problem) {
	c := &setCompiler{files: files, file: filename, prefix: prefix, ix: ix}
	s := &Set{
		ID:          sc.ID,
		Description: sc.Description,
		AppID:       sc.AppID,
		Events:      sc.ThreatEvents,
		Status:      sc.Status,
		Message:     sc.Message,
		Config:      sc,
	}

	switch {
	case sc.ID == "":
		c.addf("id", "required: a lowercase DNS label such as \"bank-prod\"")
	case certid.CheckSetID(sc.ID) != nil:
		// One rule with `mcc issue` (pki/certid owns the identity format).
		c.addf("id", "invalid id %q: must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters, no leading or trailing '-'), since it goes into the identity URI SAN and Envoy resource names", sc.ID)
	}
	switch {
	case sc.AppID == "":
		c.addf("app_id", "required: the app identity, such as \"com.example.bank\"")
	case certid.CheckAppID(sc.AppID) != nil:
		c.addf("app_id", "invalid app id %q: use letters, digits, '.', '-' and '_' (it is the path of the identity URI SAN)", sc.AppID)
	}
	s.IdentityURI = IdentityURI(sc.ID, sc.AppID)

	c.compileMode(s, sc)
	c.compileTrust(s, sc, baseDir)
	c.compilePins(s, sc)
	c.compileCrypto(s, sc)
	c.compileLimits(s, sc)
	c.compileBuilds(s, sc)
	c.compileScoring(s, sc)
	c.compileDevices(s, sc)
	c.compileClone(s, sc)
	c.compileInstalls(s, sc)
	c.compileRevocation(s, sc, baseDir)
	c.compileCache(s, sc)

	if len(c.problems) > 0 {
		return nil, c.problems
	}
	return s, nil
}

func (c *setCompiler) compileMode(s *Set, sc SetConfig) {
	switch sc.Mode {
	case "":
		c.addf("mode", "required: defense or detection")
	case string(threat.ModeDefense), string(threat.ModeDetection):
		s.Mode = threat.Mode(sc.Mode)
		if s.Mode == threat.ModeDetection && !sc.ThreatEvents {
			c.addf("threat_events", "mode detection with threat_events false can neither block nor report: set threat_events: true or mode: defense")
		}
	default:
		c.addf("mode", "unknown mode %q: want defense or detection", sc.Mode)
	}
	if s.Status == 0 {
		s.Status = DefaultStatus
	} else if s.Status < 400 || s.Status > 599 {
		c.addf("status", "status %d is not an HTTP error status (400-599)", s.Status)
	}
	if s.Message == "" {
		s.Message = DefaultMessage
	} else if len(s.Message) > 1024 {
		c.addf("message", "message longer than 1024 bytes")
	}
}

func (c *setCompiler) compileTrust(s *Set, sc SetConfig, baseDir string) {
	s.CACerts = c.loadCerts("trusted_ca", sc.TrustedCA, baseDir, true, &s.caFiles)
	s.Roots = x509.NewCertPool()
	for _, cert := range s.CACerts {
		s.Roots.AddCert(cert)
	}
	s.Intermediates = x509.NewCertPool()
	if sc.Intermediates != nil {
		s.IntermediateCerts = c.loadCerts("intermediates", *sc.Intermediates, baseDir, false, &s.caFiles)
		for _, cert := range s.IntermediateCerts {
			s.Intermediates.AddCert(cert)
		}
	}
}

// loadCerts reads a CA bundle from a file or inline PEM. Every certificate
// must be a CA certificate.
func (c *setCompiler) loadCerts(field string, src CASource, baseDir string, required bool, files *[]string) []*x509.Certificate {
	var data []byte
	switch {
	case src.File != "" && src.PEM != "":
		c.addf(field, "give either file or pem, not both")
		return nil
	case src.File != "" && c.files.inline:
		c.addf(field+".file", inlineFileRefused+"give the certificates with pem")
		return nil
	case src.File != "":
		path := absPath(baseDir, src.File)
		*files = append(*files, path)
		field += ".file"
		certs, err := parseFile(c.files, path, maxCAFileSize, "ca bundle", func(_ string, data []byte) ([]*x509.Certificate, error) {
			return parseCertBundle(data)
		})
		if err != nil {
			c.addf(field, "%v", err)
			return nil
		}
		return c.checkCAs(field, slices.Clone(certs))
	case src.PEM != "":
		data, field = []byte(src.PEM), field+".pem"
	default:
		if required {
			c.addf(field, "required: file or pem with the CA certificate that issues the app's client certificates")
		} else {
			c.addf(field, "give file or pem")
		}
		return nil
	}
	certs, err := parseCertBundle(data)
	if err != nil {
		c.addf(field, "%v", err)
		return nil
	}
	return c.checkCAs(field, certs)
}

// checkCAs refuses a bundle with a certificate that is not a CA's.
func (c *setCompiler) checkCAs(field string, certs []*x509.Certificate) []*x509.Certificate {
	for i, cert := range certs {
		if !cert.BasicConstraintsValid || !cert.IsCA {
			c.addf(field, "certificate %d (%s) is not a CA certificate", i+1, cert.Subject)
			return nil
		}
	}
	return certs
}

// parseCertBundle parses PEM certificates; anything else in the bundle
// (private keys above all) is refused rather than ignored.
func parseCertBundle(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("bundle contains a %s: it must hold certificates only (and never a key)", b.Type)
			}
			return nil, fmt.Errorf("unexpected PEM block %q, want CERTIFICATE", b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no PEM certificate found")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("unparsable data after certificate %d", len(certs))
	}
	return certs, nil
}

func (c *setCompiler) compilePins(s *Set, sc SetConfig) {
	for i, p := range sc.SPKIPins {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(p))
		if err != nil || len(b) != sha256.Size {
			c.addf("spki_pins["+strconv.Itoa(i)+"]", "pin %q is not a base64 SHA-256 hash (44 characters)", truncate(p, 60))
			continue
		}
		s.SPKIPins = append(s.SPKIPins, b)
	}
}

func (c *setCompiler) compileCrypto(s *Set, sc SetConfig) {
	s.MinRSABits = sc.Crypto.MinRSABits
	switch {
	case s.MinRSABits == 0:
		s.MinRSABits = DefaultMinRSABits
	case s.MinRSABits < 1024 || s.MinRSABits > 16384:
		c.addf("crypto.min_rsa_bits", "%d is out of range (1024-16384)", s.MinRSABits)
	}
	s.AllowedCurves = sc.Crypto.AllowedCurves
	if len(s.AllowedCurves) == 0 {
		s.AllowedCurves = DefaultAllowedCurves
	}
	s.curves = make(map[string]bool, len(s.AllowedCurves))
	for i, name := range sc.Crypto.AllowedCurves {
		if !slices.Contains(knownCurves, name) {
			c.addf("crypto.allowed_curves["+strconv.Itoa(i)+"]", "unknown curve %q: want one of %s", name, strings.Join(knownCurves, ", "))
		}
	}
	for _, name := range s.AllowedCurves {
		s.curves[name] = true
	}
	s.RequireClientAuthEKU = sc.Crypto.RequireClientAuthEKU == nil || *sc.Crypto.RequireClientAuthEKU
}

func (c *setCompiler) compileLimits(s *Set, sc SetConfig) {
	s.MaxLifetime = sc.MaxLifetime.Std()
	s.MaxChainDepth = sc.MaxChainDepth
	switch {
	case s.MaxChainDepth == 0:
		s.MaxChainDepth = DefaultMaxChainDepth
	case s.MaxChainDepth < 1 || s.MaxChainDepth > 10:
		c.addf("max_chain_depth", "%d is out of range (1-10)", s.MaxChainDepth)
	}
}

func (c *setCompiler) compileBuilds(s *Set, sc SetConfig) {
	s.blocked = make(map[string]struct{}, len(sc.Builds.Blocked))
	for i, b := range sc.Builds.Blocked {
		b = strings.TrimSpace(b)
		if b == "" {
			c.addf("builds.blocked["+strconv.Itoa(i)+"]", "empty build id")
			continue
		}
		s.blocked[b] = struct{}{}
		s.BlockedBuilds = append(s.BlockedBuilds, b)
	}
	if d := strings.TrimSpace(sc.Builds.MinBuildDate); d != "" {
		t, err := parseDateOrTime(d)
		if err != nil {
			c.addf("builds.min_build_date", "%q is not an RFC 3339 date (2026-01-31) or time (2026-01-31T12:00:00Z)", d)
		}
		s.MinBuildDate = t
	}
}

func parseDateOrTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

func (c *setCompiler) compileScoring(s *Set, sc SetConfig) {
	s.scores = make(map[threat.Reason]int, len(sc.Scores))
	for code, v := range sc.Scores {
		r := threat.Reason(code)
		if !r.Valid() || r == threat.ReasonNone {
			c.addf("scores."+code, "unknown reason code %q", code)
			continue
		}
		if v < 0 || v > 1000000 {
			c.addf("scores."+code, "score %d is out of range (0-1000000)", v)
			continue
		}
		s.scores[r] = v
	}
	if sc.FailSafe == nil {
		if len(sc.Scores) > 0 {
			c.addf("scores", "scores have no effect without fail_safe: add fail_safe with a threshold")
		}
		return
	}
	fs := sc.FailSafe
	switch {
	case fs.Threshold < 0 || fs.Threshold == 0 && c.has("fail_safe.threshold"):
		c.addf("fail_safe.threshold", "must be a positive score (the running score at which the client is blocked), got %d", fs.Threshold)
	case fs.Threshold == 0:
		c.addf("fail_safe.threshold", "required: a positive score at which the client is blocked")
	}
	s.FailSafe = threat.Policy{Threshold: fs.Threshold, Window: fs.Window.Std(), BanFor: fs.Duration.Std()}
	if s.FailSafe.Window == 0 {
		s.FailSafe.Window = DefaultFailSafeWindow
	}
	if s.FailSafe.BanFor == 0 {
		s.FailSafe.BanFor = DefaultFailSafeDuration
	}
	c.compileFailSafeSubjects(s, sc)
}

func (c *setCompiler) compileDevices(s *Set, sc SetConfig) {
	s.DeviceHeaders = make(map[string]string, len(sc.DeviceHeaders))
	for key, header := range sc.DeviceHeaders {
		field := "device_headers." + key
		if !slices.Contains(threat.DeviceKeys, key) {
			c.addf(field, "unknown device key %q: want one of %s", key, strings.Join(threat.DeviceKeys, ", "))
			continue
		}
		if !reHeaderName.MatchString(header) {
			c.addf(field, "%q is not an HTTP header name", header)
			continue
		}
		s.DeviceHeaders[key] = textproto.CanonicalMIMEHeaderKey(header)
	}
	s.deviceIDHeader = s.DeviceHeaders["deviceID"]
}

func (c *setCompiler) compileRevocation(s *Set, sc SetConfig, baseDir string) {
	rc := sc.Revocation
	src := &s.revSrc
	for i, v := range rc.Serials {
		b, err := parseSerial(v)
		if err != nil {
			c.addf("revocation.serials["+strconv.Itoa(i)+"]", "%v", err)
			continue
		}
		src.serials = append(src.serials, b)
	}
	for i, v := range rc.Fingerprints {
		fp, err := parseFingerprint(v)
		if err != nil {
			c.addf("revocation.fingerprints["+strconv.Itoa(i)+"]", "%v", err)
			continue
		}
		src.fingerprints = append(src.fingerprints, fp)
	}
	if c.files.inline {
		for i := range rc.Files {
			c.addf("revocation.files["+strconv.Itoa(i)+"]", inlineFileRefused+"list serials or fingerprints inline, or use revocation.urls")
		}
		for i := range rc.CRLs {
			c.addf("revocation.crls["+strconv.Itoa(i)+"]", inlineFileRefused+"use revocation.urls")
		}
		rc.Files, rc.CRLs = nil, nil
	}
	for i, f := range rc.Files {
		src.files = append(src.files, absPath(baseDir, f))
		src.fileFields = append(src.fileFields, c.path("revocation.files["+strconv.Itoa(i)+"]"))
	}
	for i, f := range rc.CRLs {
		src.crls = append(src.crls, absPath(baseDir, f))
		src.crlFields = append(src.crlFields, c.path("revocation.crls["+strconv.Itoa(i)+"]"))
	}
	c.compileRemote(s, rc, baseDir)
	src.issuers = append(append(src.issuers, s.CACerts...), s.IntermediateCerts...)
	rs, errs := src.loadWith(1, c.files)
	for _, e := range errs {
		line := 0
		if c.ix != nil {
			line = c.ix.valueLine(e.field)
		}
		c.problems = append(c.problems, Problem{File: c.file, Line: line, Field: e.field, Msg: e.msg})
	}
	s.rev.Store(rs)
}
