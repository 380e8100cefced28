// Package xds is mcc's Envoy control plane: it loads the fusion set file
// with its gateway section, translates it (package translate), publishes it
// to Envoy over ADS (package serve), and reloads it when any file it depends
// on changes. `mcc xds` is a thin command around Server.
package xds

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/mccgate/mcc/fusion"
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
}

// Load reads the fusion set file at path strictly, with its gateway section
// and every file either refers to. A problem in the file is reported as a
// *fusion.LoadError or a *gateway.Error, each problem with file, line and
// field.
func Load(path string) (*Config, error) {
	fc, gwNode, err := loadFusion(path)
	if err != nil {
		return nil, err
	}
	gw, err := gateway.Decode(gwNode, gateway.Options{
		File:      path,
		BaseDir:   filepath.Dir(fc.Path),
		FusionSet: func(id string) bool { return fc.Sets[id] != nil },
	})
	if err != nil {
		return nil, err
	}
	cfg := &Config{Fusion: fc, Gateway: gw, Input: translate.Input{Gateway: gw, Sets: map[string]*translate.FusionSet{}}}
	for _, l := range gw.Listeners {
		for _, id := range l.FusionSets() {
			if cfg.Input.Sets[id] != nil {
				continue
			}
			fs, err := fusionSet(fc.Sets[id])
			if err != nil {
				return nil, fmt.Errorf("%s: fusion set %q: %w", path, id, err)
			}
			cfg.Input.Sets[id] = fs
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
func fusionSet(s *fusion.Set) (*translate.FusionSet, error) {
	fs := &translate.FusionSet{
		ID:          s.ID,
		Mode:        s.Mode,
		IdentityURI: s.IdentityURI,
		CAPEM:       s.CAPEM(),
	}
	for _, pin := range s.SPKIPins {
		fs.SPKIPins = append(fs.SPKIPins, base64.StdEncoding.EncodeToString(pin))
	}
	for _, p := range s.CRLFiles() {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("revocation.crls: %w", err)
		}
		fs.CRLPEM = append(fs.CRLPEM, crlPEM(data)...)
	}
	return fs, nil
}

// crlPEM returns a CRL file as PEM: Envoy's crl data source wants PEM, while
// the fusion set file also takes DER (what `openssl ca -gencrl -outform DER`
// and many CAs publish).
func crlPEM(data []byte) []byte {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		if !bytes.HasSuffix(data, []byte("\n")) {
			data = append(data, '\n')
		}
		return data
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: data})
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
