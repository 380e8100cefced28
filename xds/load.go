// Package xds is mcc's Envoy control plane: it loads the fusion set file
// with its gateway section, translates it (package translate), publishes it
// to Envoy over ADS (package serve), and reloads it when any file it depends
// on changes. `mcc xds` is a thin command around Server.
package xds

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/cfgerr"
	"github.com/mccgate/mcc/xds/gateway"
	"github.com/mccgate/mcc/xds/translate"
)

// Config is a loaded fusion set file, its decoded gateway section and the
// translation input built from them.
type Config struct {
	Fusion  *fusion.Config
	Gateway *gateway.Gateway
	Input   translate.Input
	// Files are every file the configuration was built from: the fusion
	// set file, CA bundles, CRLs, revocation lists, certificates and keys.
	Files []string
	// Version is a hash of those files' contents.
	Version string
	// CRLProblems are expired CRLs and CRLs close to expiry, as `mcc
	// validate` reports them; they do not stop the configuration.
	CRLProblems []cfgerr.Problem
}

// Load reads the fusion set file at path strictly, with its gateway section
// and every file either refers to, through fusion's one loader (each
// referenced file is parsed once per content there). Problems in the file
// are reported together as a *cfgerr.List (= *fusion.LoadError =
// *gateway.Error), each with file, line and field.
func Load(path string) (*Config, error) {
	// Every problem `mcc validate` reports is reported here too, at once:
	// those of the fusion sets, those of the gateway section (decoded even
	// when the fusion sets have problems), and expired CRLs.
	fc, section, err := fusion.LoadFileWithGateway(path)
	var problems []cfgerr.Problem
	if err != nil {
		var le *fusion.LoadError
		if !errors.As(err, &le) {
			return nil, err
		}
		problems = append(problems, le.Problems...)
	}
	var gw *gateway.Gateway
	if section != nil {
		var gerr error
		gw, gerr = gateway.Decode(section.Node, gateway.Options{File: section.File, BaseDir: section.BaseDir, FusionSet: section.HasSet})
		if gerr == nil {
			// mcc xds sends listener certificates and keys: it reads them.
			gerr = gw.LoadMaterial()
		}
		if gerr != nil {
			var ge *gateway.Error
			if !errors.As(gerr, &ge) {
				return nil, gerr
			}
			problems = append(problems, ge.Problems...)
		}
	}
	if len(problems) > 0 {
		return nil, &cfgerr.List{Problems: problems}
	}
	// An expired or nearly expired CRL is reported, not refused: Envoy
	// (like mcc authz) then refuses the certificates it covers, which is
	// the policy, while the other fusion sets keep working.
	expired, soon := fc.CRLProblems(time.Now())
	cfg := &Config{Fusion: fc, Gateway: gw, CRLProblems: append(expired, soon...),
		Input: translate.Input{Gateway: gw, Sets: map[string]*translate.FusionSet{}}}
	for _, l := range gw.Listeners {
		for _, id := range l.FusionSets() {
			if cfg.Input.Sets[id] == nil {
				cfg.Input.Sets[id] = fusionSet(fc.Sets[id])
			}
		}
	}
	cfg.Files = append(fc.WatchedFiles(), gw.Files()...)
	cfg.Version, err = filesVersion(cfg.Files)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// fusionSet is what Envoy's handshake needs of a compiled fusion set.
func fusionSet(s *fusion.Set) *translate.FusionSet {
	fs := &translate.FusionSet{
		ID:          s.ID,
		Mode:        s.Mode,
		IdentityURI: s.IdentityURI,
		CAPEM:       s.CAPEM(),
		// The CRLs the fusion engine accepted (a CRL with a lower number
		// than one already seen is refused there), so that Envoy and mcc
		// authz enforce the same revocations.
		CRLPEM: s.CRLPEM(),
	}
	for _, pin := range s.SPKIPins {
		fs.SPKIPins = append(fs.SPKIPins, base64.StdEncoding.EncodeToString(pin))
	}
	return fs
}

// filesVersion hashes the files' names and contents.
func filesVersion(files []string) (string, error) {
	sorted := append([]string(nil), files...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, p := range sorted {
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
